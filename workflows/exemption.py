"""``ExemptionExpiry`` (``exemption:{id}``): one exemption's durable timer.

Started by the API with the exemption's approval run. It sleeps until ``expires_at`` (a
durable timer: worker restarts and Temporal restarts do not lose it), then asks the API to
expire the exemption, which regrades the entity and emits ``SCORECARD_LEVEL_CHANGED`` if its
level drops. A revoked exemption's timer is cancelled; one that wakes anyway (a declined
exemption, a cancellation that did not reach Temporal) finds nothing to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts.exemptions import EXPIRE_ACTIVITY, ExemptionExpiry


@workflow.defn(name="ExemptionExpiry")
class ExemptionExpiryTimer:
    @workflow.run
    async def run(self, expiry: ExemptionExpiry) -> dict[str, Any]:
        deadline = datetime.fromisoformat(expiry.expires_at.replace("Z", "+00:00"))
        workflow.set_current_details(f"Exemption {expiry.exemption_id} ends at {expiry.expires_at}")
        while (left := deadline - workflow.now()) > timedelta(0):
            await workflow.sleep(left)
        result: dict[str, Any] = await workflow.execute_activity(
            EXPIRE_ACTIVITY,
            expiry,
            result_type=dict,
            start_to_close_timeout=timedelta(minutes=1),
            # The API down for a while must not lose an expiry: retried until it answers.
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            summary=f"expire {expiry.exemption_id}",
        )
        return result
