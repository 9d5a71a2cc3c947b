"""The initiative workflow on the time-skipping test server (days in seconds): reminders as Slack
DMs to the members of the teams whose entities fail (one each, listing their entities and the
rules to fix) and a summary to the owner team; a moved deadline re-arms the timers; at the
deadline the final report is stored with its events; a deleted initiative's workflow ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import build_activities
from catalog.db import make_engine
from catalog.models import Initiative
from devtools.testing import eventually_async
from tests.fakes.server import serve
from tests.fakes.slack import FakeSlack
from tests.initiatives.test_api import READINESS
from tests.temporal_env import start_time_skipping
from tests.workflows.conftest import ADMIN_TOKEN, serve_api, stack_settings
from workflows import ALL_WORKFLOWS

PEOPLE = {  # user -> (team, Slack id)
    "pat": ("payments", "U0PAT"),
    "pia": ("payments", "U0PIA"),
    "sam": ("search", "U0SAM"),
    "mo": ("platform", "U0MO"),
}


@pytest.fixture
async def skipping() -> AsyncIterator[WorkflowEnvironment]:
    async with start_time_skipping() as env:
        yield env


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
async def api(
    tmp_path: Path, skipping: WorkflowEnvironment, fake_slack: FakeSlack
) -> AsyncIterator[httpx.AsyncClient]:
    fake_slack.reset()
    fake_slack.users |= {f"{user}@example.com": slack_id for user, (_, slack_id) in PEOPLE.items()}
    settings = stack_settings(
        tmp_path,
        skipping,
        temporal_search_attributes=False,  # the time-skipping server has none
        slack_bot_token=fake_slack.token,
        slack_api_url=f"{fake_slack.url}/api",
    )
    with serve_api(settings) as url:
        settings = settings.model_copy(update={"api_url": url})
        async with (
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
            ) as client,
            Worker(
                skipping.client,
                task_queue=settings.task_queue,
                workflows=ALL_WORKFLOWS,
                activities=build_activities(settings),
            ),
        ):
            await _catalog(client)
            yield client


async def _ok(response: Any, status: int = 201) -> Any:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _catalog(api: httpx.AsyncClient) -> None:
    for team in ("platform", "payments", "search"):
        await _ok(api.post("/v1/teams", json={"identifier": team, "title": team}))
    for user, (team, _) in PEOPLE.items():
        user_body = {
            "identifier": user,
            "email": f"{user}@example.com",
            "name": user.title(),
            "teams": [team],
        }
        await _ok(api.post("/v1/users", json=user_body))
    properties = {p: {"type": "string"} for p in ("tier", "repo")}
    await _ok(
        api.post(
            "/v1/blueprints",
            json={"identifier": "service", "title": "Service", "schema": {"properties": properties}},
        )
    )
    await _ok(api.post("/v1/blueprints/service/scorecards", json=READINESS))
    for identifier, team, props in [
        ("pay-api", "payments", {"tier": "1", "repo": "r"}),
        ("pay-db", "payments", {"tier": "1"}),
        ("search-api", "search", {}),
    ]:
        body: dict[str, Any] = {"identifier": identifier, "team": [team], "properties": props}
        await _ok(api.post("/v1/blueprints/service/entities", json=body))


def _initiative(identifier: str, deadline: datetime) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "title": "Everything gold",
        "owner": {"teams": ["platform"]},
        "targets": [{"blueprint": "service", "scorecard": "readiness", "level": "Gold"}],
        "deadline": deadline.isoformat(),
        "remind_before": ["P7D", "P1D"],
    }


def _dms(fake: FakeSlack) -> dict[str, list[dict[str, Any]]]:
    """Messages per DM channel (``D`` + the Slack id without its ``U``)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for (channel, _), message in list(fake.messages.items()):
        found.setdefault(channel, []).append(message)
    return found


async def _reminders(api: httpx.AsyncClient, identifier: str, count: int) -> list[dict[str, Any]]:
    async def sent() -> list[dict[str, Any]] | None:
        reminders: list[dict[str, Any]] = (await _ok(api.get(f"/v1/initiatives/{identifier}"), 200))[
            "reminders"
        ]
        return reminders if len(reminders) >= count else None

    return await eventually_async(sent, what=f"{count} reminders of {identifier}")


async def test_reminders_a_moved_deadline_and_the_final_report(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment, fake_slack: FakeSlack
) -> None:
    deadline = datetime.now(UTC) + timedelta(days=10)
    await _ok(api.post("/v1/initiatives", json=_initiative("all-gold", deadline)))
    handle = skipping.client.get_workflow_handle("initiative:all-gold")
    assert (await handle.query("view"))["state"] in ("waiting", "active")

    # the P7D reminder, three days on
    await skipping.sleep(timedelta(days=3, hours=1))
    (first,) = await _reminders(api, "all-gold", 1)
    assert first["failing_teams"] == ["payments", "search"] and (first["total"], first["passing"]) == (3, 1)

    async def delivered(expected: int) -> dict[str, list[dict[str, Any]]] | None:
        dms = _dms(fake_slack)
        return dms if sum(len(m) for m in dms.values()) >= expected else None

    dms = await eventually_async(lambda: delivered(4), what="four DMs")
    assert {channel: len(messages) for channel, messages in dms.items()} == {
        "D0PAT": 1,
        "D0PIA": 1,
        "D0SAM": 1,
        "D0MO": 1,
    }
    pat = str(dms["D0PAT"][0]["blocks"])
    assert "pay-db" in pat and "Has a repository (Gold)" in pat and "search-api" not in pat
    assert "/v1/blueprints/service/entities/pay-db" in pat  # a link to the entity
    sam = str(dms["D0SAM"][0]["blocks"])
    assert "search-api" in sam and "Has a tier (Bronze)" in sam and "Has a repository (Gold)" in sam
    assert "1 of 3 entities meet the targets" in str(dms["D0MO"][0]["text"])
    events = (await _ok(api.get("/v1/events", params={"type": "INITIATIVE_REMINDER"}), 200))["items"]
    assert len(events) == 1

    # search fixes its service; the deadline moves two days later: the timers re-arm
    await _ok(
        api.patch(
            "/v1/blueprints/service/entities/search-api", json={"properties": {"tier": "2", "repo": "r"}}
        ),
        200,
    )
    later = deadline + timedelta(days=2)
    await _ok(api.put("/v1/initiatives/all-gold", json=_initiative("all-gold", later)), 200)

    async def rearmed() -> bool:
        return bool((await handle.query("view"))["deadline"] == _instant(later))

    await eventually_async(rearmed, what="the new deadline in the workflow")
    fake_slack.reset()
    fake_slack.users |= {f"{user}@example.com": slack_id for user, (_, slack_id) in PEOPLE.items()}
    # the new deadline's P7D reminder is two days away (five from the start), its P1D one eight
    await skipping.sleep(timedelta(days=2))
    second = (await _reminders(api, "all-gold", 2))[1]
    assert second["remind_before"] == "P7D" and second["failing_teams"] == ["payments"]
    dms = await eventually_async(lambda: delivered(3), what="three DMs")
    assert sorted(dms) == ["D0MO", "D0PAT", "D0PIA"]  # search has nothing left to fix

    # at the deadline: the report, its events, and the workflow's end
    await skipping.sleep(later - await skipping.get_current_time() + timedelta(minutes=5))
    result = await handle.result()
    assert result["state"] == "reported"
    stored = await _ok(api.get("/v1/initiatives/all-gold"), 200)
    report = stored["final_report"]
    assert report["deadline"] == _instant(later) and (report["total"], report["passing"]) == (3, 2)
    assert [f["entity"] for f in report["failing"]] == ["pay-db"]
    assert len(stored["reminders"]) == 3  # P7D and P1D of the new deadline, P7D of the first
    passed = (await _ok(api.get("/v1/events", params={"type": "INITIATIVE_DEADLINE_PASSED"}), 200))["items"]
    assert sorted(e["team"] or "" for e in passed) == ["", "payments"]


async def test_deleting_an_initiative_ends_its_workflow(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment
) -> None:
    await _ok(
        api.post("/v1/initiatives", json=_initiative("short-lived", datetime.now(UTC) + timedelta(days=30)))
    )
    await _ok(api.delete("/v1/initiatives/short-lived"), 204)
    result = await skipping.client.get_workflow_handle("initiative:short-lived").result()
    assert result["state"] == "ended" and result["reminded"] == []
    assert (await api.get("/v1/initiatives/short-lived")).status_code == 404


def _instant(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


async def test_a_deadline_the_catalog_refuses_ends_the_workflow(
    api: httpx.AsyncClient, skipping: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The initiative vanished without its workflow hearing of it (a restored backup, say): the
    report is refused, the workflow waits a minute for a new schedule, then ends."""
    await _ok(
        api.post("/v1/initiatives", json=_initiative("vanished", datetime.now(UTC) + timedelta(days=2)))
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    with engine.begin() as connection:
        connection.execute(delete(Initiative).where(Initiative.identifier == "vanished"))
    engine.dispose()
    await skipping.sleep(timedelta(days=2, minutes=5))  # past the deadline and the minute's wait
    result = await skipping.client.get_workflow_handle("initiative:vanished").result()
    assert result["state"] == "ended"
    assert any("not reported" in line and "not found" in line for line in result["log"]), result["log"]
