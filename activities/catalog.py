"""Gantry's own API as an integration: catalog steps, run reports, secrets, reconciling.

Activities reach the catalog through its HTTP API with the service token (never the
database), so validation, audit and events happen in one place. Writes name the run they are
made for (``X-Gantry-Run-Id``), so the audit log ties them to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.batching import GroupCommit
from activities.errors import bad_params, vendor_error
from activities.urls import identifier as identifier_segment
from activities.urls import path
from catalog.runs import secrets
from config import Settings
from contracts.automations import AutomationLaunch
from contracts.exemptions import ExemptionExpiry
from contracts.runs import ReportInput
from contracts.steps import VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput, StepResult
from contracts.timers import ExpiryRun, TimerReport

RUN_HEADER = "X-Gantry-Run-Id"
TIMER_REPORTS_PER_REQUEST = 200
API_CONNECTIONS = 32


class GantryApi:
    """The one typed client of the catalog API that workers use."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self.timer_reports: GroupCommit[dict[str, Any], dict[str, Any]] = GroupCommit(
            self._send_timer_reports, max_batch=TIMER_REPORTS_PER_REQUEST
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GantryApi:
        token = settings.secret("service_token") or ""
        return cls(
            httpx.AsyncClient(
                base_url=settings.api_url,
                headers={"Authorization": f"Bearer {token}", "User-Agent": "gantry-worker"},
                timeout=httpx.Timeout(30.0),
                # At most this many requests in flight to our own API (the worker runs up to 100
                # activities): more would only queue for the API's 40 threads.
                limits=httpx.Limits(max_connections=API_CONNECTIONS),
            )
        )

    async def request(
        self, method: str, path: str, *, run_id: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {RUN_HEADER: run_id} if run_id else {}
        try:
            return await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise vendor_error("Gantry API", exc=exc) from exc

    async def call(self, method: str, path: str, *, run_id: str | None = None, **kwargs: Any) -> Any:
        response = await self.request(method, path, run_id=run_id, **kwargs)
        if not response.is_success:
            raise vendor_error("Gantry API", response)
        return response.json() if response.content else None

    async def report_timer(self, timer_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """Tell the catalog what a timer did (``{"timer", "owners"}`` back). Reports made while
        another is in flight go together: one request, one transaction for many timers."""
        return await self.timer_reports.submit({"timer_id": timer_id, "report": report})

    async def _send_timer_reports(self, items: list[dict[str, Any]]) -> list[dict[str, Any] | BaseException]:
        body = await self.call("POST", "/v1/timers/reports", json={"reports": items})
        return [
            result
            if result["status"] == 200
            else ApplicationError(
                f"Gantry API {result['status']}: {result['error']}",
                type=VENDOR_CLIENT_ERROR,
                non_retryable=True,
            )
            for result in body["results"]
        ]

    async def open_sync(self, data_source: str, sync_id: str, trigger: str) -> dict[str, Any]:
        """Open the sync record (idempotent: an existing one is answered as it is)."""
        route = path("v1", "data-sources", data_source, "syncs", sync_id)
        body: dict[str, Any] = await self.call("PUT", route, json={"trigger": trigger})
        return body

    async def data_source(self, data_source: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("GET", path("v1", "data-sources", data_source))
        return body

    async def send_items(self, data_source: str, sync_id: str, batch: dict[str, Any]) -> dict[str, Any]:
        """One page of raw items for the catalog to map and write; a page it already applied
        answers its stored counts."""
        route = path("v1", "data-sources", data_source, "syncs", sync_id, "items")
        body: dict[str, Any] = await self.call("POST", route, json=batch)
        return body

    async def complete_sync(
        self, data_source: str, sync_id: str, completion: dict[str, Any]
    ) -> dict[str, Any]:
        route = path("v1", "data-sources", data_source, "syncs", sync_id, "complete")
        body: dict[str, Any] = await self.call("POST", route, json=completion)
        return body

    async def run_secrets(self, run_id: str) -> dict[str, str]:
        body = await self.call("GET", path("v1", "runs", run_id, "secrets"))
        values: dict[str, str] = body["secrets"]
        return values


class CatalogActivities:
    def __init__(self, api: GantryApi) -> None:
        self._api = api

    @activity.defn(name="catalog.upsert_entity")
    async def upsert_entity(self, step: StepInput) -> StepResult:
        params = step.params
        blueprint, identifier = _require(params, "blueprint"), _require(params, "identifier")
        body = {
            k: params[k] for k in ("identifier", "title", "team", "properties", "relations") if k in params
        }
        query = {"merge": "true"} if params.get("merge") else {"upsert": "true"}
        if params.get("create_missing_related_entities"):
            query["create_missing_related_entities"] = "true"
        # The identifier travels in the body; checked here too, so a bad one fails as a bad param.
        identifier_segment(identifier)
        entity = await self._api.call(
            "POST",
            path("v1", "blueprints", blueprint, "entities"),
            run_id=step.run_id,
            json=body,
            params=query,
        )
        return StepResult(
            outputs={"entity": entity},
            affected_entities=[{"blueprint": blueprint, "identifier": identifier, "operation": "UPSERT"}],
        )

    @activity.defn(name="catalog.delete_entity")
    async def delete_entity(self, step: StepInput) -> StepResult:
        blueprint, identifier = _require(step.params, "blueprint"), _require(step.params, "identifier")
        # Identifiers may hold "/": encoded, the whole identifier stays one segment of the path.
        identifier_segment(identifier)
        response = await self._api.request(
            "DELETE", path("v1", "blueprints", blueprint, "entities", identifier), run_id=step.run_id
        )
        if response.status_code == 404:  # already gone: deleting is idempotent
            return StepResult(outputs={"deleted": False})
        if not response.is_success:
            raise vendor_error("Gantry API", response)
        return StepResult(
            outputs={"deleted": True},
            affected_entities=[{"blueprint": blueprint, "identifier": identifier, "operation": "DELETE"}],
        )

    @activity.defn(name="gantry.report_run")
    async def report_run(self, report: ReportInput) -> None:
        response = await self._api.request(
            "POST", path("v1", "runs", report.run_id, "report"), json=dataclasses.asdict(report.report)
        )
        if response.status_code == 404:
            # The API commits the run just after starting its workflow: retry until it is there.
            raise ApplicationError(f"run {report.run_id} is not recorded yet", type=VENDOR_SERVER_ERROR)
        if not response.is_success:
            raise vendor_error("Gantry API", response)

    @activity.defn(name="gantry.report_timer")
    async def report_timer(self, report: TimerReport) -> dict[str, Any]:
        """Tell the catalog what a timer did; the answer names the owners when they are to be told."""
        return await self._api.report_timer(report.timer_id, report.report.to_json())

    @activity.defn(name="gantry.start_expiry_run")
    async def start_expiry_run(self, expiry: ExpiryRun) -> str:
        """Launch the blueprint's on-expiry action as an AUTOMATION run (once per deadline)."""
        run = await self._api.call(
            "POST",
            path("v1", "actions", expiry.action, "runs"),
            json={
                "entity": expiry.entity,
                "inputs": {},
                "source": "AUTOMATION",
                "idempotency_key": expiry.idempotency_key,
                **({"trigger": {"timer": expiry.timer_id}} if expiry.timer_id else {}),
            },
        )
        run_id: str = run["id"]
        return run_id

    @activity.defn(name="gantry.launch_automation_run")
    async def launch_automation_run(self, launch: AutomationLaunch) -> str:
        """Launch an automation's action; a refused launch (4xx) is not retried."""
        body: dict[str, Any] = {
            "inputs": launch.inputs,
            "source": "AUTOMATION",
            "idempotency_key": launch.idempotency_key,
            "trigger": launch.trigger,
        }
        if launch.entity:
            body["entity"] = launch.entity
        run = await self._api.call("POST", path("v1", "actions", launch.action, "runs"), json=body)
        run_id: str = run["id"]
        return run_id

    @activity.defn(name="gantry.run_status")
    async def run_status(self, run_id: str) -> dict[str, Any]:
        """A run's status and error, once (the timer workflow polls with durable sleeps between)."""
        run = await self._api.call("GET", path("v1", "runs", run_id))
        return {"status": run["status"], "error": run.get("error")}

    @activity.defn(name="gantry.regrade_scorecards")
    async def regrade_scorecards(self) -> dict[str, int]:
        body: dict[str, int] = await self._api.call("POST", "/v1/scorecards/regrade", timeout=600)
        return body

    @activity.defn(name="gantry.expire_exemption")
    async def expire_exemption(self, expiry: ExemptionExpiry) -> dict[str, Any]:
        """An exemption's date has come: the catalog expires it and regrades its entity. One
        that is gone (its entity or scorecard deleted) has nothing left to expire."""
        route = path(
            "v1", "blueprints", expiry.blueprint, "scorecards", expiry.scorecard, "exemptions",
            expiry.exemption_id, "expire",
        )  # fmt: skip
        response = await self._api.request("POST", route)
        if response.status_code == 404:
            return {"status": "GONE"}
        if not response.is_success:
            raise vendor_error("Gantry API", response)
        return {"status": response.json()["status"]}

    @activity.defn(name="gantry.reconcile_runs")
    async def reconcile_runs(self) -> list[str]:
        body = await self._api.call("POST", "/v1/runs/reconcile")
        converged: list[str] = body["converged"]
        return converged


def _require(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise bad_params(f"'{name}' must be a non-empty string")
    return value


StepActivity = Callable[[StepInput], Awaitable[StepResult]]


def with_secrets(fn: Callable[..., Any], api: GantryApi) -> Callable[..., Any]:
    """Wrap a step activity so the run's ``${secret:MARKER:NAME}`` placeholders become its secret
    inputs just before the vendor call, and any echo of a secret is masked in what it returns.
    Placeholders without this run's marker (written into data by anyone) stay literal."""
    name = fn.__temporal_activity_definition.name  # type: ignore[attr-defined]

    @activity.defn(name=name)
    async def run_step(step: StepInput) -> StepResult:
        if not secrets.mentions_secret(step.params, step.secret_marker):
            result: StepResult = await fn(step)
            return result
        values = await api.run_secrets(step.run_id)
        try:
            result = await fn(
                dataclasses.replace(step, params=secrets.resolve(step.params, values, step.secret_marker))
            )
        except ApplicationError as exc:
            raise ApplicationError(
                _mask(str(exc.message), values),
                *(_masked(detail, values) for detail in exc.details),
                type=exc.type,
                non_retryable=exc.non_retryable,
                next_retry_delay=exc.next_retry_delay,
                category=exc.category,
            ) from None
        return _mask_result(result, values)

    return run_step


def _mask(text: str, values: dict[str, str]) -> str:
    for value in values.values():
        if value:
            text = text.replace(value, secrets.REDACTED)
    return text


def _masked(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _mask(value, values)
    if isinstance(value, dict):
        return {k: _masked(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, values) for v in value]
    return value


def _mask_result(result: StepResult, values: dict[str, str]) -> StepResult:
    return dataclasses.replace(
        result, outputs=_masked(result.outputs, values), log=[_mask(line, values) for line in result.log]
    )
