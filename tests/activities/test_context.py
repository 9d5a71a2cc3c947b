"""Step errors with context: the step kind, its target, the attempt, what happens next and a hint
for known causes — from real failures (a closed port, a name that does not resolve, a vendor's
401, a 503 with Retry-After) — and one log line per failed attempt, without a traceback."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.ci import GitHubActions
from activities.context import with_context
from activities.http import HostPolicy, Webhooks
from contracts.steps import VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR, StepInput
from tests.activities.conftest import POLL, Env, step
from tests.fakes.github import FakeGitHub
from tests.fakes.webhook import FakeWebhookReceiver

LOCAL = HostPolicy.parse("127.0.0.1")
RETRY = {"maximum_attempts": 5, "initial_interval": 1.0, "backoff_coefficient": 2.0, "maximum_interval": 60.0}


def with_retry(inp: StepInput, **retry: float) -> StepInput:
    return dataclasses.replace(inp, retry={**RETRY, **retry})


async def failure(env: Env, fn: Any, inp: StepInput) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await env.run(with_context(fn), inp)
    return err.value


async def test_a_closed_port_names_the_url_the_attempt_the_next_retry_and_asks_if_reachable(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    hooks = Webhooks(http, "s", LOCAL)
    inp = with_retry(step("http.request", url="http://127.0.0.1:9/hook"))
    with caplog.at_level(logging.WARNING, logger="gantry.steps"):
        error = await failure(Env().retrying(attempt=3), hooks.request, inp)
    assert error.message == (
        "http.request POST http://127.0.0.1:9/hook failed (attempt 3 of 5, next retry in 4 s): "
        "connection refused — is 127.0.0.1:9 reachable from the worker?"
    )
    assert error.type == VENDOR_SERVER_ERROR and not error.non_retryable
    assert error.category == ApplicationErrorCategory.BENIGN
    (record,) = [r for r in caplog.records if r.name == "gantry.steps"]
    assert record.getMessage() == f"run run-1 step deploy: {error.message}"
    assert record.exc_info is None and "\n" not in record.getMessage()


async def test_the_last_attempt_says_no_retries_are_left(http: httpx.AsyncClient) -> None:
    inp = with_retry(step("http.request", url="http://127.0.0.1:9/hook", method="put"))
    error = await failure(Env().retrying(attempt=5), Webhooks(http, "s", LOCAL).request, inp)
    assert error.message.startswith(
        "http.request PUT http://127.0.0.1:9/hook failed (attempt 5 of 5, no retries left)"
    )


async def test_a_name_that_does_not_resolve_is_a_dns_failure(http: httpx.AsyncClient) -> None:
    inp = with_retry(step("http.request", url="https://gantry-no-such-host.invalid/hook"))
    error = await failure(Env(), Webhooks(http, "s").request, inp)
    assert "failed (attempt 1 of 5, next retry in 1 s): DNS lookup failed" in error.message
    assert error.message.endswith("— is gantry-no-such-host.invalid:443 reachable from the worker?")


async def test_a_vendor_401_is_final_and_points_at_the_token(github: FakeGitHub) -> None:
    async with httpx.AsyncClient(base_url=github.url, headers={"Authorization": "Bearer nope"}) as client:
        inp = with_retry(
            step("github.workflow_dispatch", repo="acme/payments", workflow="deploy.yml", ref="main")
        )
        error = await failure(Env(), GitHubActions(client, poll_interval=POLL).workflow_dispatch, inp)
    assert error.message == (
        "github.workflow_dispatch acme/payments deploy.yml failed (attempt 1 of 5, not retryable): "
        "GitHub 401: Bad credentials — check GANTRY_GITHUB_TOKEN"
    )
    assert error.type == VENDOR_CLIENT_ERROR and error.non_retryable


async def test_a_receivers_retry_after_is_the_next_retry(
    receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    receiver.fail_next(503, {"message": "busy"}, headers={"Retry-After": "30"})
    inp = with_retry(step("http.request", url=f"{receiver.url}/hook"))
    error = await failure(Env(), Webhooks(http, receiver.secret, LOCAL).request, inp)
    assert (
        f"http.request POST {receiver.url}/hook failed (attempt 1 of 5, next retry in 30 s): "
        in error.message
    )
    assert "webhook 503: busy" in error.message and error.next_retry_delay is not None


async def test_a_receivers_401_suggests_its_credentials(
    receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    receiver.fail_next(401, {"message": "bad signature"})
    inp = with_retry(step("http.request", url=f"{receiver.url}/hook"))
    error = await failure(Env(), Webhooks(http, receiver.secret, LOCAL).request, inp)
    assert error.message.endswith("— check what the receiver expects (its headers, GANTRY_WEBHOOK_SECRET)")


async def test_a_bug_keeps_its_traceback_and_is_retried() -> None:
    @activity.defn(name="http.request")
    async def broken(step: StepInput) -> Any:
        outputs: dict[str, Any] = {}
        return outputs["missing"]

    inp = with_retry(step("http.request", url="https://example.com/x"))
    with pytest.raises(ApplicationError) as err:
        await Env().run(with_context(broken), inp)
    assert err.value.message.startswith("http.request POST https://example.com/x failed (attempt 1 of 5")
    assert "KeyError: 'missing'" in err.value.message and not err.value.non_retryable
    assert isinstance(err.value.__cause__, KeyError)  # Temporal logs it with this traceback
    assert err.value.category != ApplicationErrorCategory.BENIGN


async def test_secret_placeholders_in_the_target_are_masked(http: httpx.AsyncClient) -> None:
    inp = with_retry(step("http.request", url="http://127.0.0.1:9/${secret:abc123:TOKEN}"))
    error = await failure(Env(), Webhooks(http, "s", LOCAL).request, inp)
    assert "abc123" not in error.message and "http://127.0.0.1:9/********" in error.message
