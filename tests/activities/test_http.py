"""http.request: signed webhooks, and the vendor error mapping every integration shares."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.errors import retry_after, vendor_error
from activities.http import HostPolicy, Webhooks, sign, verify_signature
from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR, VENDOR_SERVER_ERROR
from tests.activities.conftest import Env, step
from tests.fakes.webhook import FakeWebhookReceiver

# The fakes listen on 127.0.0.1: allowed explicitly, as the test settings and the demo do.
LOCAL = HostPolicy.parse("127.0.0.1")


async def test_request_is_signed_and_carries_the_idempotency_key(
    env: Env, receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    hooks = Webhooks(http, receiver.secret, LOCAL)
    body = {"service": "payments", "version": "v2", "nested": {"ünï": [1, 2]}}
    result = await env.run(
        hooks.request,
        step(
            "http.request",
            url=f"{receiver.url}/hooks/deploy",
            body=body,
            headers={"X-Team": "pay"},
            query={"dry_run": "1"},
        ),
    )

    assert result.outputs["status_code"] == 200
    assert result.outputs["body"]["path"] == "/hooks/deploy"
    assert result.outputs["body"]["query"] == {"dry_run": "1"}
    assert result.outputs["headers"]["content-type"] == "application/json"
    assert receiver.verified == [True]
    [call] = receiver.calls("POST")
    assert call.headers["idempotency-key"] == "run-1:deploy"
    assert call.headers["x-team"] == "pay"
    assert call.headers["x-gantry-signature"] == sign(
        receiver.secret, call.headers["x-gantry-timestamp"], call.body
    )
    assert json.loads(call.body) == body


async def test_wrong_secret_is_refused_by_the_receiver_as_a_client_error(
    env: Env, receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    hooks = Webhooks(http, "not-the-secret", LOCAL)
    with pytest.raises(ApplicationError) as err:
        await env.run(hooks.request, step("http.request", url=f"{receiver.url}/x", body={"a": 1}))
    assert err.value.type == VENDOR_CLIENT_ERROR and err.value.non_retryable
    assert "webhook 401: bad signature" in err.value.message
    assert receiver.verified == [False]


async def test_server_error_is_retryable_and_honours_retry_after(
    env: Env, receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    receiver.fail_next(503, {"message": "maintenance"}, headers={"Retry-After": "7"})
    hooks = Webhooks(http, receiver.secret, LOCAL)
    with pytest.raises(ApplicationError) as err:
        await env.run(hooks.request, step("http.request", url=f"{receiver.url}/x", method="put"))
    assert err.value.type == VENDOR_SERVER_ERROR and not err.value.non_retryable
    assert err.value.next_retry_delay == timedelta(seconds=7)
    assert receiver.calls()[0].method == "PUT"

    # The retry (same key) goes through and the receiver can tell it is a duplicate delivery.
    result = await env.run(hooks.request, step("http.request", url=f"{receiver.url}/x", method="put"))
    assert result.outputs["status_code"] == 200


async def test_unreachable_host_is_retryable(env: Env, http: httpx.AsyncClient) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(Webhooks(http, "s", LOCAL).request, step("http.request", url="http://127.0.0.1:9/hook"))
    assert err.value.type == VENDOR_SERVER_ERROR and not err.value.non_retryable


async def test_non_http_url_is_a_bad_param(env: Env, http: httpx.AsyncClient) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(Webhooks(http, "s").request, step("http.request", url="file:///etc/passwd"))
    assert err.value.type == STEP_FAILED and err.value.non_retryable


def test_verify_signature_checks_the_body_the_secret_and_the_window() -> None:
    body = b'{"a":1}'
    signature = sign("k", 1000, body)
    assert verify_signature("k", "1000", body, signature, now=1000)
    assert verify_signature("k", 1000, body.decode(), signature, now=1000 + 300)
    assert not verify_signature("k", 1000, body, signature, now=1000 + 301)
    assert not verify_signature("k", 1000, body, signature, now=1000 - 301)
    assert not verify_signature("other", 1000, body, signature, now=1000)
    assert not verify_signature("k", 1000, b'{"a":2}', signature, now=1000)
    assert not verify_signature("k", 1001, body, signature, now=1000)
    assert not verify_signature("k", "soon", body, signature, now=1000)
    assert verify_signature("k", 1000, body, f"v1=deadbeef, {signature}", now=1000)


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("GET", "http://x"))


def test_vendor_messages_of_each_shape() -> None:
    jira = _response(400, {"errorMessages": ["Bad"], "errors": {"summary": "required"}})
    assert vendor_error("Jira", jira).message == "Jira 400: Bad; summary: required"
    gitlab = _response(400, {"message": {"base": ["Reference not found"]}})
    assert vendor_error("GitLab", gitlab).message == "GitLab 400: base: ['Reference not found']"
    github = _response(422, {"message": "Validation Failed", "errors": [{"message": "ref is bad"}]})
    assert vendor_error("GitHub", github).message == "GitHub 422: Validation Failed; ref is bad"


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (408, True), (429, True), (502, True)]
)
def test_status_classes(status: int, retryable: bool) -> None:
    error = vendor_error("X", _response(status, {"message": "m"}))
    assert error.non_retryable is not retryable
    assert error.type == (VENDOR_SERVER_ERROR if retryable else VENDOR_CLIENT_ERROR)


def test_github_rate_limit_403_is_retryable_until_the_reset() -> None:
    reset = int((datetime.now(UTC) + timedelta(seconds=60)).timestamp())
    error = vendor_error(
        "GitHub",
        _response(
            403,
            {"message": "API rate limit exceeded"},
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        ),
    )
    assert error.type == VENDOR_SERVER_ERROR and not error.non_retryable
    assert error.next_retry_delay is not None and timedelta(seconds=50) < error.next_retry_delay <= timedelta(
        seconds=60
    )


def test_retry_after_as_http_date() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after({"Retry-After": "Tue, 01 Jan 2030 00:00:30 GMT"}, now=now) == timedelta(seconds=30)
    assert retry_after({"Retry-After": "garbage"}, now=now) is None
    assert retry_after({}, now=now) is None


# ---- the destination policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/hook",
        "http://192.168.1.10:8080/hook",
        "http://localhost/hook",
        "http://127.0.0.1/hook",
    ],
)
async def test_internal_destinations_are_refused(env: Env, http: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(ApplicationError) as err:
        await env.run(Webhooks(http, "s").request, step("http.request", url=url))
    assert err.value.type == STEP_FAILED and err.value.non_retryable
    assert "refused" in err.value.message and "GANTRY_HTTP_ALLOWED_HOSTS" in err.value.message
    assert httpx.URL(url).host in err.value.message


async def test_an_allowed_host_is_reached_at_the_address_that_was_checked(
    env: Env, receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    port = httpx.URL(receiver.url).port
    for allowed in ("localhost", "127.0.0.1", "127.0.0.0/8"):
        hooks = Webhooks(http, receiver.secret, HostPolicy.parse(f" example.org , {allowed}"))
        result = await env.run(hooks.request, step("http.request", url=f"http://localhost:{port}/hooks/x"))
        assert result.outputs["status_code"] == 200
    calls = receiver.calls("POST")
    assert len(calls) == 3 and {c.headers["host"] for c in calls} == {f"localhost:{port}"}


async def test_redirects_are_not_followed(
    env: Env, receiver: FakeWebhookReceiver, http: httpx.AsyncClient
) -> None:
    receiver.fail_next(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})
    hooks = Webhooks(http, receiver.secret, LOCAL)
    with pytest.raises(ApplicationError):
        await env.run(hooks.request, step("http.request", url=f"{receiver.url}/hooks/moved"))
    assert len(receiver.calls()) == 1


def test_policy_entries_are_names_addresses_and_networks() -> None:
    policy = HostPolicy.parse("hooks.internal, 10.1.2.3, 172.16.0.0/12, fd00::/8")
    ip = ipaddress.ip_address
    assert policy.allows("hooks.internal", ip("10.9.9.9"))
    assert policy.allows("x", ip("10.1.2.3")) and not policy.allows("x", ip("10.1.2.4"))
    assert policy.allows("x", ip("172.31.255.1")) and not policy.allows("x", ip("192.168.0.1"))
    assert policy.allows("x", ip("fd12::1"))
    assert policy.allows("x", ip("93.184.216.34"))  # public: always
    assert not HostPolicy().allows("x", ip("169.254.169.254"))
