"""A step activity wrapped by ``with_secrets``: the run's marked placeholders become the secret
values for the vendor call only, and a vendor echoing a secret back (in its response, its log
lines or its error) has it masked before anything reaches workflow history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.catalog import GantryApi, with_secrets
from catalog.runs.secrets import REDACTED, placeholder
from contracts.steps import VENDOR_CLIENT_ERROR, StepInput, StepResult

MARKER = "c0ffee"
SECRET = "tok_live_SECRET"
RUN_ID = "run-1"


class SecretsEndpoint:
    """``GET /v1/runs/{id}/secrets`` of the API, counting how often it is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request.url.path)
        return httpx.Response(200, json={"secrets": {"token": SECRET, "empty": ""}})


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[SecretsEndpoint, GantryApi]]:
    answer = SecretsEndpoint()
    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(base_url="http://api.test", transport=transport) as client:
        yield answer, GantryApi(client)


Vendor = Callable[[StepInput], Awaitable[StepResult]]


def vendor(behaviour: Vendor) -> Callable[..., Any]:
    @activity.defn(name="http.request")
    async def call(step: StepInput) -> StepResult:
        return await behaviour(step)

    return call


def step(params: dict[str, Any], marker: str = MARKER) -> StepInput:
    return StepInput(run_id=RUN_ID, step_id="call", uses="http.request", params=params, secret_marker=marker)


async def run(api: GantryApi, behaviour: Vendor, params: dict[str, Any], marker: str = MARKER) -> Any:
    wrapped = with_secrets(vendor(behaviour), api)
    return await ActivityEnvironment().run(wrapped, step(params, marker))


async def test_the_vendor_gets_the_secret_and_its_echo_is_masked(
    endpoint: tuple[SecretsEndpoint, GantryApi],
) -> None:
    answer, api = endpoint
    seen: list[dict[str, Any]] = []

    async def echo(inp: StepInput) -> StepResult:
        seen.append(inp.params)
        return StepResult(
            outputs={"body": {"echo": inp.params["headers"]["Authorization"], "items": [SECRET, 3]}},
            log=[f"POST with token {SECRET}"],
        )

    params = {"headers": {"Authorization": f"Bearer {placeholder('token', MARKER)}"}}
    result = await run(api, echo, params)
    assert seen == [{"headers": {"Authorization": f"Bearer {SECRET}"}}]
    assert answer.asked == [f"/v1/runs/{RUN_ID}/secrets"]
    assert result.outputs == {"body": {"echo": f"Bearer {REDACTED}", "items": [REDACTED, 3]}}
    assert result.log == [f"POST with token {REDACTED}"]
    assert SECRET not in repr(result)


async def test_a_vendor_error_echoing_the_secret_is_masked(
    endpoint: tuple[SecretsEndpoint, GantryApi],
) -> None:
    _, api = endpoint

    async def refuse(inp: StepInput) -> StepResult:
        raise ApplicationError(
            f"401 from vendor: bad token {SECRET}",
            {"response": {"token": SECRET}, "status": 401},
            type=VENDOR_CLIENT_ERROR,
            non_retryable=True,
        )

    with pytest.raises(ApplicationError) as failed:
        await run(api, refuse, {"token": placeholder("token", MARKER)})
    error = failed.value
    assert error.message == f"401 from vendor: bad token {REDACTED}"
    assert error.details == ({"response": {"token": REDACTED}, "status": 401},)
    assert (error.type, error.non_retryable) == (VENDOR_CLIENT_ERROR, True)
    assert error.__cause__ is None, "the original error (with the secret) is not chained"


async def test_placeholders_of_another_run_stay_literal_and_no_secret_is_fetched(
    endpoint: tuple[SecretsEndpoint, GantryApi],
) -> None:
    answer, api = endpoint
    seen: list[dict[str, Any]] = []

    async def record(inp: StepInput) -> StepResult:
        seen.append(inp.params)
        return StepResult(outputs={"sent": inp.params})

    foreign = {"title": placeholder("token", "badbad"), "bare": placeholder("token")}
    result = await run(api, record, foreign)
    assert seen == [foreign]
    assert result.outputs == {"sent": foreign}
    assert answer.asked == [], "a step without this run's placeholders never asks for secrets"
