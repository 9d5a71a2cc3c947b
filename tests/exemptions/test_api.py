"""Exemptions through the API on SQLite and PostgreSQL: the request and its approval run, who
may ask, approve and revoke, bad requests by pointer (changing nothing), EXEMPT on the entity,
in results, in search by level and in the level history, revocation and expiry regrading at
once with SCORECARD_LEVEL_CHANGED."""

from __future__ import annotations

from typing import Any

from catalog.exemptions.decisions import EXEMPTION_ACTION
from contracts.exemptions import expiry_workflow_id
from tests.exemptions.conftest import BASE, SERVICE, World, in_days


def approve(world: World, exemption: dict[str, Any], by: str = "mo") -> None:
    approval = {"status": "APPROVED", "approvals": [{"user": by, "via": "api"}], "declines": []}
    world.report(exemption["run_id"], "SUCCESS", approval)


def pointers(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return sorted(d["pointer"] for d in response.json()["error"]["details"])


def level_events(world: World) -> list[dict[str, Any]]:
    events = world.client.get("/v1/events?type=SCORECARD_LEVEL_CHANGED&entity=pay").json()["items"]
    return [e["scorecard"] for e in events]


def test_a_request_waits_for_its_approval_run(world: World) -> None:
    response = world.request()
    assert response.status_code == 201, response.text
    exemption = response.json()
    assert exemption["status"] == "PENDING"
    assert exemption["requested_by"] == "olive"
    assert (exemption["entity"], exemption["rule"]) == ("pay", "has_repo")
    run = world.client.get(f"/v1/runs/{exemption['run_id']}").json()
    assert run["action"] == EXEMPTION_ACTION
    assert run["status"] == "WAITING_FOR_APPROVAL"
    assert run["inputs"]["rule"] == "has_repo" and run["inputs"]["scorecard"] == "readiness"
    # the timer first, then the approval run; approvers: the moderators and admins, not olive
    started = dict(world.gateway.started)
    assert [w for w, _ in world.gateway.started] == [expiry_workflow_id(exemption["id"]), run["workflow_id"]]
    workflow_input = started[run["workflow_id"]]
    eligible = {a.identifier for a in workflow_input.approvals["action"].eligible}
    assert eligible == {"mo", "admin"}
    assert world.entity_rules()["has_repo"]["status"] == "FAILURE"
    # a second request for the same rule while one waits: 409
    assert world.request().status_code == 409
    assert world.client.get(f"{BASE}/{exemption['id']}").json() == exemption


def test_approved_the_rule_is_exempt_everywhere_and_revoking_regrades_at_once(world: World) -> None:
    assert world.entity_rules()["level"] == "Bronze"
    exemption = world.request().json()
    approve(world, exemption)
    shown = world.client.get(f"{BASE}/{exemption['id']}").json()
    assert (shown["status"], shown["decided_by"]) == ("APPROVED", "mo")

    rules = world.entity_rules()
    assert rules["level"] == "Silver"
    assert rules["has_repo"]["status"] == "EXEMPT"
    assert rules["has_repo"]["exemption"] == {
        "id": exemption["id"],
        "reason": exemption["reason"],
        "expires_at": exemption["expires_at"],
    }
    results = world.client.get("/v1/blueprints/service/scorecards/readiness/results").json()
    item = next(i for i in results["items"] if i["entity"] == "pay")
    assert item["rules"]["has_repo"] is True and item["exempt"]["has_repo"]["id"] == exemption["id"]
    rate = next(r for r in results["rules"] if r["identifier"] == "has_repo")
    assert (rate["passed"], rate["exempt"]) == (1, 1)
    query = {"combinator": "and", "rules": [{"scorecard": "readiness", "operator": "=", "value": "Silver"}]}
    found = world.client.post("/v1/entities/search", json={"query": query}).json()["items"]
    assert [e["identifier"] for e in found] == ["pay"]
    assert found[0]["scorecards"]["readiness"]["rules"][1]["status"] == "EXEMPT"
    history = world.client.get("/v1/blueprints/service/scorecard-history?entity=pay").json()["items"]
    assert (history[-1]["to"], list(history[-1]["exempt"])) == ("Silver", ["has_repo"])
    assert level_events(world)[0] == {
        "identifier": "readiness",
        "from": "Bronze",
        "to": "Silver",
        "direction": "RAISED",
        "exempt": ["has_repo"],
    }

    # revoked by its requester: regraded in the same request, and its timer is cancelled
    revoked = world.client.delete(f"{BASE}/{exemption['id']}", headers=world.as_("olive"))
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["status"], revoked.json()["decided_by"]) == ("REVOKED", "olive")
    assert world.entity_rules()["level"] == "Bronze"
    assert world.entity_rules()["has_repo"]["status"] == "FAILURE"
    assert level_events(world)[0]["exemptions_ended"] == ["has_repo"]
    assert level_events(world)[0]["direction"] == "DROPPED"
    assert expiry_workflow_id(exemption["id"]) in world.gateway.cancelled
    assert world.client.delete(f"{BASE}/{exemption['id']}").status_code == 409
    audit = world.client.get("/v1/audit-log?resource_type=exemption").json()["items"]
    assert {a["operation"] for a in audit} >= {"CREATE", "APPROVED", "REVOKED"}


def test_the_timer_expires_it_and_the_level_drops(world: World) -> None:
    exemption = world.request().json()
    approve(world, exemption)
    url = f"{BASE}/{exemption['id']}/expire"
    assert world.client.post(url, headers=world.as_("olive")).status_code == 403
    expired = world.client.post(url, headers=SERVICE)
    assert expired.status_code == 200, expired.text
    assert expired.json()["status"] == "EXPIRED"
    assert world.entity_rules()["level"] == "Bronze"
    assert level_events(world)[0]["direction"] == "DROPPED"
    # again (a retried activity): nothing more happens
    assert world.client.post(url, headers=SERVICE).json()["status"] == "EXPIRED"
    assert len(level_events(world)) == 2


def test_declined_or_cancelled_runs_decide_the_exemption(world: World) -> None:
    first = world.request().json()
    world.report(
        first["run_id"],
        "DECLINED",
        {"status": "DECLINED", "approvals": [], "declines": [{"user": "admin", "comment": "fix it"}]},
    )
    assert world.client.get(f"{BASE}/{first['id']}").json()["status"] == "DECLINED"
    assert world.entity_rules()["has_repo"]["status"] == "FAILURE"
    assert world.gateway.cancelled == [expiry_workflow_id(first["id"])]  # its timer waits no more
    second = world.request().json()
    world.report(second["run_id"], "CANCELLED")
    assert world.client.get(f"{BASE}/{second['id']}").json()["status"] == "REVOKED"
    assert world.gateway.cancelled[-1] == expiry_workflow_id(second["id"])
    # a report repeated (a retried activity) cancels nothing more
    world.report(second["run_id"], "CANCELLED")
    assert len(world.gateway.cancelled) == 2
    # a run approved after its exemption was revoked changes nothing
    third = world.request().json()
    assert world.client.delete(f"{BASE}/{third['id']}", headers=world.as_("mo")).status_code == 200
    assert f"action:{EXEMPTION_ACTION}:{third['run_id']}" in world.gateway.cancelled
    approve(world, third)
    assert world.client.get(f"{BASE}/{third['id']}").json()["status"] == "REVOKED"
    assert world.entity_rules()["level"] == "Bronze"


def test_who_may_ask(world: World) -> None:
    # viewers never; another team's member may read the entity but not exempt it; the worker
    # is nobody's requester
    assert world.request("vera").status_code == 403
    assert world.request("oscar").status_code == 403
    assert world.request("service").status_code == 403
    # a moderator and an admin may (the admin then is no approver of their own request)
    assert world.request("mo", rule="has_owner").status_code == 201
    assert world.request("admin").status_code == 201
    assert world.client.get(BASE).json()["items"][0]["requested_by"] == "mo"


def test_nobody_approves_their_own_request(world: World) -> None:
    exemption = world.request().json()
    refused = world.client.post(
        f"/v1/runs/{exemption['run_id']}/approval", json={"decision": "APPROVE"}, headers=world.as_("olive")
    )
    assert refused.status_code == 403
    assert "self-approval" in refused.json()["error"]["message"]
    for user in ("oscar", "vera"):
        response = world.client.post(
            f"/v1/runs/{exemption['run_id']}/approval", json={"decision": "APPROVE"}, headers=world.as_(user)
        )
        assert response.status_code == 403


def test_a_request_nobody_else_could_approve_is_refused(world: World) -> None:
    # no moderators on the blueprint, and the requester is the only admin
    world.client.patch("/v1/blueprints/service", json={"moderators": {"users": [], "teams": []}})
    response = world.request("admin")
    assert response.status_code == 409, response.text
    assert world.client.get(BASE).json()["items"] == []


def test_bad_requests_name_the_field_and_change_nothing(world: World) -> None:
    assert pointers(world.request(rule="no_such_rule")) == ["/rule"]
    assert pointers(world.request(expires_at=in_days(-1))) == ["/expires_at"]
    assert pointers(world.request(expires_at=in_days(0.01))) == ["/expires_at"]
    assert pointers(world.request(expires_at=in_days(366))) == ["/expires_at"]
    assert pointers(world.request(expires_at="2031-01-01T00:00:00")) == ["/expires_at"]
    assert pointers(world.request(entity="nope")) == ["/entity"]
    assert pointers(world.request(reason="")) == ["/reason"]
    assert pointers(world.request(rule="nope", expires_at=in_days(400))) == ["/expires_at", "/rule"]
    assert world.client.get(BASE).json()["items"] == []
    assert world.client.get("/v1/runs").json()["items"] == []
    assert world.gateway.started == []


def test_temporal_down_is_a_503_and_leaves_nothing_pending(world: World) -> None:
    world.gateway.down = True
    response = world.request()
    assert response.status_code == 503
    (exemption,) = world.client.get(BASE).json()["items"]
    assert exemption["status"] == "DECLINED"
    assert world.client.get(f"/v1/runs/{exemption['run_id']}").json()["status"] == "FAILURE"
    # Temporal still down: a revocation never waits for it
    world.gateway.down = False
    approved = world.request().json()
    approve(world, approved)
    world.gateway.down = True
    assert world.client.delete(f"{BASE}/{approved['id']}").json()["status"] == "REVOKED"


def test_who_may_revoke_and_who_sees_them(world: World) -> None:
    exemption = world.request().json()
    url = f"{BASE}/{exemption['id']}"
    for user in ("oscar", "vera", "service"):
        assert world.client.delete(url, headers=world.as_(user)).status_code == 403, user
    assert world.client.get(url, headers=world.as_("vera")).status_code == 200
    assert world.client.get(f"{BASE}/ex_nope").status_code == 404
    assert world.client.get(url.replace("readiness", "other")).status_code == 404
    page = world.client.get(BASE, params={"entity": "pay", "status": "PENDING"}).json()
    assert [e["id"] for e in page["items"]] == [exemption["id"]]
    assert world.client.get(BASE, params={"status": "APPROVED"}).json()["items"] == []


def test_a_read_filter_hides_exemptions_of_unreadable_entities(world: World) -> None:
    exemption = world.request().json()
    policy = {"permissions": {"read": {"owned_by_team": True}}}
    assert world.client.patch("/v1/blueprints/service", json=policy).status_code == 200
    assert world.client.get(BASE, headers=world.as_("oscar")).json()["items"] == []
    assert world.client.get(f"{BASE}/{exemption['id']}", headers=world.as_("oscar")).status_code == 404
    assert world.client.delete(f"{BASE}/{exemption['id']}", headers=world.as_("oscar")).status_code == 404
    assert len(world.client.get(BASE, headers=world.as_("olive")).json()["items"]) == 1
