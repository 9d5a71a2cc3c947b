"""An automation's invocation: ``automation:{automation}:{event_id}``.

Renders the automation's ``invoke`` (templates see ``event``) and launches the action as a
normal run with ``source: AUTOMATION``, linked to its event. The workflow id makes the
invocation happen once per event, however often the event is relayed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import jinja2
    import jinja2.compiler
    import jinja2.runtime
    import jinja2.sandbox  # noqa: F401

    from catalog.sandbox.templates import TemplateFailure, render_value
    from contracts.automations import AutomationInput, AutomationLaunch


@workflow.defn(name="AutomationRun")
class AutomationRun:
    @workflow.run
    async def run(self, inp: AutomationInput) -> dict[str, Any]:
        invoke = inp.automation["invoke"]
        try:
            entity = render_value(invoke.get("entity"), {"event": inp.event}, "/invoke/entity")
            inputs = render_value(invoke.get("inputs", {}), {"event": inp.event}, "/invoke/inputs")
        except TemplateFailure as exc:
            return {"status": "FAILURE", "error": str(exc)}
        workflow.set_current_details(f"**{inp.automation['identifier']}** → {invoke['action']}")
        launch = AutomationLaunch(
            action=invoke["action"],
            entity=entity or None,
            inputs=inputs,
            idempotency_key=workflow.info().workflow_id,
            trigger={
                "automation": inp.automation["identifier"],
                "event_id": inp.event["id"],
                "depth": inp.depth,
            },
        )
        run_id = await workflow.execute_activity(
            "gantry.launch_automation_run",
            launch,
            result_type=str,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(
                maximum_attempts=10,
                maximum_interval=timedelta(minutes=1),
                non_retryable_error_types=["VendorClientError"],
            ),
            summary=f"launch {invoke['action']}",
        )
        return {"status": "LAUNCHED", "run_id": run_id}
