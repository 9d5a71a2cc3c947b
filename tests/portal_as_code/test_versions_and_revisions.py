"""ETag / If-Match, dry-run writes, configuration revisions, history and revert."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import Gantry
from portal_as_code.apply import ApplyError, apply_plan
from portal_as_code.plan import make_plan
from tests.portal_as_code.conftest import ADMIN_TOKEN, Portal
from tests.portal_as_code.documents import action, blueprint, team, write_docs


def test_a_stale_if_match_is_a_412_and_changes_nothing(portal: Portal) -> None:
    assert portal.call("POST", "/v1/teams", {"identifier": "sre", "title": "SRE"}).status_code == 201
    read = portal.call("GET", "/v1/teams/sre")
    etag = read.headers["ETag"]
    fresh = portal.call("PATCH", "/v1/teams/sre", {"title": "Site reliability"}, headers={"If-Match": etag})
    assert fresh.status_code == 200
    assert portal.call("GET", "/v1/teams/sre").headers["ETag"] != etag

    stale = portal.call("PATCH", "/v1/teams/sre", {"title": "Lost update"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    error = stale.json()["error"]
    assert error["code"] == "precondition_failed"
    assert error["details"][0]["field"] == "If-Match"
    assert portal.get("/v1/teams/sre")["title"] == "Site reliability"

    portal.call("POST", "/v1/blueprints", blueprint("app")[1])
    bp_etag = portal.call("GET", "/v1/blueprints/app").headers["ETag"]
    body = {**blueprint("app")[1], "title": "Application"}
    assert portal.call("PUT", "/v1/blueprints/app", body, headers={"If-Match": bp_etag}).status_code == 200
    assert portal.call("PUT", "/v1/blueprints/app", body, headers={"If-Match": bp_etag}).status_code == 412


def test_a_dry_run_checks_the_write_and_saves_nothing(portal: Portal) -> None:
    created = portal.call(
        "POST", "/v1/teams", {"identifier": "sre", "title": "SRE"}, params={"dry_run": "true"}
    )
    assert created.status_code == 201 and created.json()["title"] == "SRE"
    assert portal.call("GET", "/v1/teams/sre").status_code == 404
    bad = portal.call("POST", "/v1/actions", action("touch", on="nothing")[1], params={"dry_run": "true"})
    assert bad.status_code in (404, 422)
    portal.call("POST", "/v1/blueprints", blueprint("app")[1])
    before = portal.get("/v1/blueprints/app")
    answer = portal.call(
        "PUT", "/v1/blueprints/app", {**blueprint("app")[1], "title": "X"}, params={"dry_run": "true"}
    )
    assert answer.status_code == 200 and answer.json()["title"] == "X"
    assert portal.get("/v1/blueprints/app") == before
    revisions = portal.get("/v1/config/revisions?kind=Team")["items"]
    assert revisions == []  # a dry run leaves no revision either


def test_two_applies_at_once_never_overwrite_each_other(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    write_docs(config, "a.yaml", team("sre"), blueprint("app"))
    assert portal.gantry("apply", str(config), "--yes") == 0
    write_docs(config, "a.yaml", team("sre", "Ours"), blueprint("app"))
    api = Gantry.connect(portal.url, ADMIN_TOKEN)
    plan = make_plan(api, config)  # this pipeline read the team …
    # … and another pipeline changed it before this one applied.
    other = config.parent / "other"
    write_docs(other, "a.yaml", team("sre", "Theirs"))
    assert portal.gantry("apply", str(other), "--yes") == 0
    with pytest.raises(ApplyError) as refused:
        apply_plan(api, plan, echo=lambda _line: None)
    assert "412" in str(refused.value) and "Team sre" in str(refused.value)
    assert portal.get("/v1/teams/sre")["title"] == "Theirs"
    api.http.close()


def test_history_and_revert(portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    write_docs(config, "a.yaml", team("sre", "First"), blueprint("app"))
    assert portal.gantry("apply", str(config), "--yes") == 0
    write_docs(config, "a.yaml", team("sre", "Second"), blueprint("app"))
    assert portal.gantry("apply", str(config), "--yes") == 0
    capsys.readouterr()

    assert portal.gantry("history", "Team", "sre") == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[3] for r in rows] == ["UPDATE", "CREATE"] and rows[0][2] == "admin"
    update = portal.get(f"/v1/config/revisions/{rows[0][0]}")
    assert update["before"]["title"] == "First" and update["after"]["title"] == "Second"

    assert portal.gantry("revert", rows[0][0]) == 0
    assert portal.get("/v1/teams/sre")["title"] == "First"
    revisions = portal.get("/v1/config/revisions?kind=Team&identifier=sre")["items"]
    assert len(revisions) == 3 and revisions[0]["after"]["title"] == "First"  # itself a revision

    assert portal.gantry("revert", rows[1][0]) == 0  # reverting the creation deletes
    assert portal.call("GET", "/v1/teams/sre").status_code == 404

    bp_create = portal.get("/v1/config/revisions?kind=Blueprint&identifier=app")["items"][0]
    portal.call("PUT", "/v1/blueprints/app", {**blueprint("app")[1], "title": "Changed by hand"})
    changed = portal.get("/v1/config/revisions?kind=Blueprint&identifier=app")["items"][0]
    assert changed["id"] != bp_create["id"]
    assert portal.gantry("revert", str(changed["id"])) == 0
    assert portal.get("/v1/blueprints/app")["title"] == "App"
    capsys.readouterr()
    assert portal.gantry("plan", str(tmp_path / "config")) == 2  # the team is gone: plan says create
    assert "+ Team sre: create" in capsys.readouterr().out


def test_revisions_are_paged_and_moderators_see_their_blueprints_only(portal: Portal) -> None:
    portal.call("POST", "/v1/teams", {"identifier": "platform", "title": "Platform"})
    portal.call("POST", "/v1/users", {"identifier": "mo", "email": "mo@example.com", "teams": ["platform"]})
    mine = {**blueprint("app")[1], "moderators": {"teams": ["platform"]}}
    assert portal.call("POST", "/v1/blueprints", mine).status_code == 201
    assert portal.call("POST", "/v1/blueprints", blueprint("other")[1]).status_code == 201
    assert portal.call("POST", "/v1/actions", action("touch_app", "app")[1]).status_code == 201
    assert portal.call("POST", "/v1/actions", action("touch_other", "other")[1]).status_code == 201
    token = portal.call("POST", "/v1/tokens", {"user": "mo"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    seen = portal.http.get("/v1/config/revisions", headers=headers).json()["items"]
    assert {(r["kind"], r["identifier"]) for r in seen} == {("Blueprint", "app"), ("Action", "touch_app")}
    other = portal.get("/v1/config/revisions?kind=Blueprint&identifier=other")["items"][0]
    assert portal.http.get(f"/v1/config/revisions/{other['id']}", headers=headers).status_code == 404

    first = portal.get("/v1/config/revisions?limit=2")
    second = portal.get(f"/v1/config/revisions?limit=2&cursor={first['next_cursor']}")
    ids = [r["id"] for r in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    bad = portal.call("GET", "/v1/config/revisions?kind=Entity")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["pointer"] == "/kind"
