"""The portal's pages over HTTP with the TestClient, on SQLite and PostgreSQL: every page for an
admin, a member, a viewer and a signed-out visitor; sessions, CSRF and one-time codes; escaping;
generated forms and the launch; approvals; the ``?approver=`` filter. Temporal is a stub that
accepts every start (the browser tests run the real stack)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from api.temporal import DecisionRefused
from api.web.forms import fields_of
from api.web.sessions import COOKIE, web_sessions
from catalog.audit import Actor
from catalog.db import make_engine, utcnow
from catalog.identity.permissions import Principal
from catalog.initiatives import service as initiatives
from catalog.initiatives.service import InitiativeIn
from catalog.models import Run, RunApprover
from catalog.timefmt import format_instant
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_BLUEPRINT, SERVICE_TOKEN, SYSTEM_BLUEPRINT

PORTAL_ACTIONS = Path(__file__).parents[2] / "portal" / "actions"
DEPLOY: dict[str, Any] = {
    "identifier": "deploy",
    "title": "Deploy",
    "blueprint": "service",
    "trigger": {"operation": "DAY-2"},
    "user_inputs": {
        "properties": {
            "version": {"type": "string", "title": "Version", "pattern": "^v[0-9]+$"},
            "environment": {"type": "string", "enum": ["staging", "production"], "default": "staging"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
            "dry": {"type": "boolean"},
            "password": {"type": "string", "secret": True},
        },
        "required": ["version"],
    },
    "approval": {"approvers": {"roles": ["admin"]}, "allow_self_approval": False},
    "steps": [
        {"id": "record", "uses": "catalog.upsert_entity", "with": {"blueprint": "service", "identifier": "x"}}
    ],
}
PAGES = [
    "/catalog",
    "/catalog/service",
    "/catalog/service/payments",
    "/runs",
    "/approvals",
    "/scorecards",
    "/scorecards/service/readiness",
    "/timers",
    "/data-sources",
]


class Gateway:
    """Temporal that accepts every start and knows no workflow: runs stay as recorded. Its
    approval gate refuses a requester's own decision, as the workflow's does."""

    def __init__(self) -> None:
        self.requesters: dict[str, str] = {}

    async def start_action_run(self, *_: Any, **__: Any) -> None:
        return None

    async def arm_timer(self, *_: Any, **__: Any) -> None:
        return None

    async def start_automation(self, *_: Any, **__: Any) -> bool:
        return True

    async def ended(self, *_: Any, **__: Any) -> None:
        return None

    async def decide(self, workflow_id: str, decision: Any) -> dict[str, Any]:
        if self.requesters.get(workflow_id) == decision.user:
            raise DecisionRefused(403, "SELF_APPROVAL", "you requested this run")
        return {"status": "APPROVED", "required": 1, "approvals": [{"user": decision.user}], "declines": []}


@pytest.fixture
def portal(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The app with people, blueprints, entities, a scorecard and an action; settings overridden
    by an indirect parameter (a dict) when a test gives one."""
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="web-test-secret-key-0123456789abcdef",
        **getattr(request, "param", {}),
    )
    gateway = Gateway()
    with TestClient(create_app(settings, temporal=gateway), raise_server_exceptions=False) as api:  # type: ignore[arg-type]
        api.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        _ok(api.post("/v1/teams", json={"identifier": "payments-team", "title": "Payments"}))
        for name, role, teams in (
            ("mia", "member", ["payments-team"]),
            ("oscar", "member", []),
            ("vera", "viewer", []),
        ):
            _ok(
                api.post(
                    "/v1/users",
                    json={"identifier": name, "email": f"{name}@x.io", "role": role, "teams": teams},
                )
            )
        tokens = {"admin": ADMIN_TOKEN}
        for name in ("mia", "oscar", "vera"):
            tokens[name] = _ok(api.post("/v1/tokens", json={"user": name}))["token"]
        blueprint = {**SERVICE_BLUEPRINT}
        blueprint["schema"] = {
            "properties": {
                **SERVICE_BLUEPRINT["schema"]["properties"],
                "notes": {"type": "string", "format": "markdown"},
            },
            "required": ["language"],
        }
        _ok(api.post("/v1/blueprints", json=SYSTEM_BLUEPRINT))
        _ok(api.post("/v1/blueprints", json=blueprint))
        _ok(api.post("/v1/blueprints/system/entities", json={"identifier": "billing"}))
        payments = {
            "identifier": "payments",
            "title": "<script>alert('t')</script>",
            "team": ["payments-team"],
            "properties": {
                "language": "python",
                "notes": "**bold** <img src=x onerror=alert(1)>",
                "repo": "https://git.example/p",
            },
            "relations": {"system": "billing"},
        }
        _ok(api.post("/v1/blueprints/service/entities", json=payments))
        _ok(
            api.post(
                "/v1/blueprints/service/entities",
                json={"identifier": "search", "properties": {"language": "go"}},
            )
        )
        readiness = {
            "identifier": "readiness",
            "title": "Readiness",
            "levels": [{"title": "Basic"}, {"title": "Gold"}],
            "rules": [
                {
                    "identifier": "has_repo",
                    "level": "Gold",
                    "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
                }
            ],
        }
        _ok(api.post("/v1/blueprints/service/scorecards", json=readiness))
        _ok(api.post("/v1/actions", json=DEPLOY))
        yield {"api": api, "tokens": tokens, "url": database_url, "gateway": gateway}


def _ok(response: Any) -> Any:
    assert response.status_code in (200, 201, 202, 207), response.text
    return response.json()


def _browser(portal: dict[str, Any], user: str) -> TestClient:
    """A second client on the same app with no bearer token: only the session cookie."""
    api: TestClient = portal["api"]
    browser = TestClient(api.app, raise_server_exceptions=False)
    response = browser.post("/login", data={"token": portal["tokens"][user]}, follow_redirects=False)
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "gantry_session=" in cookie
    return browser


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def test_signed_out_pages_lead_to_sign_in(portal: dict[str, Any]) -> None:
    visitor = TestClient(portal["api"].app, raise_server_exceptions=False)
    assert visitor.get("/", follow_redirects=False).headers["location"] == "/login"
    for path in PAGES:
        response = visitor.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    page = visitor.get("/login")
    assert 'data-testid="signin-form"' in page.text and '<label for="token">' in page.text
    assert visitor.post("/runs/x/cancel", data={}).status_code == 403
    assert visitor.post("/login", data={"token": "wrong"}).status_code == 401
    assert visitor.post("/login", data={"token": SERVICE_TOKEN}).status_code == 401  # never the worker


@pytest.mark.parametrize("user", ["admin", "mia", "vera"])
def test_every_page_for_each_role(portal: dict[str, Any], user: str) -> None:
    browser = _browser(portal, user)
    assert browser.get("/", follow_redirects=False).headers["location"] == "/catalog"
    for path in PAGES:
        response = browser.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert "Content-Security-Policy" in response.headers
        assert 'name="csrf_token"' in response.text  # the sign-out form at least
    entity = browser.get("/catalog/service/payments").text
    assert ("Audit" in entity) is (user == "admin")  # audit entries for admins only
    assert ("/actions/deploy/launch" in entity) is (
        user != "vera"
    )  # owners execute DAY-2 actions; viewers never
    assert browser.get("/static/gantry.css").status_code == 200


def test_html_is_escaped_and_markdown_is_safe(portal: dict[str, Any]) -> None:
    browser = _browser(portal, "admin")
    for path in ("/catalog/service", "/catalog/service/payments"):
        html = browser.get(path).text
        assert "<script>alert" not in html and "&lt;script&gt;alert" in html, path
    entity = browser.get("/catalog/service/payments").text
    assert "<strong>bold</strong>" in entity and "<img" not in entity and "&lt;img" in entity
    assert '<a href="https://git.example/p" rel="noopener noreferrer">' in entity
    assert 'href="/catalog/system/billing"' in entity  # relation, outgoing
    billing = browser.get("/catalog/system/billing").text
    assert 'href="/catalog/service/payments"' in billing  # and incoming


def test_entity_table_search_filters_sort_and_paging(portal: dict[str, Any]) -> None:
    browser = _browser(portal, "admin")
    html = browser.get("/catalog/service", params={"q": "pay"}).text
    assert html.count('data-testid="entity-row"') == 1 and "payments" in html
    html = browser.get("/catalog/service", params={"f": "language|in|go,rust"}).text
    assert html.count('data-testid="entity-row"') == 1 and ">search<" in html
    html = browser.get("/catalog/service", params={"fs": "repo", "fo": "isEmpty"}).text
    assert ">search<" in html and ">payments<" not in html
    html = browser.get("/catalog/service", params={"f": "@system|=|billing"}).text
    assert ">payments<" in html and ">search<" not in html
    html = browser.get("/catalog/service", params={"f": "#readiness|=|Gold"}).text
    assert ">payments<" in html and ">search<" not in html
    html = browser.get("/catalog/service", params={"sort": "-$identifier"}).text
    assert html.index(">search<") < html.index(">payments<")
    bad = browser.get("/catalog/service", params={"f": "language|nope|x"})
    assert bad.status_code == 200 and "unknown operator" in bad.text
    api: TestClient = portal["api"]
    many = [{"identifier": f"svc-{i:03}", "properties": {"language": "go"}} for i in range(60)]
    _ok(api.post("/v1/blueprints/service/entities/bulk", json={"entities": many}))
    first = browser.get("/catalog/service", params={"cols": "language,tier"}).text
    assert (first.count('data-testid="entity-row"') == 50 and ">Tier<" in first) or ">tier<" in first
    next_url = re.search(r'href="([^"]+)" rel="next"', first)
    assert next_url is not None
    second = browser.get(next_url.group(1).replace("&amp;", "&")).text
    assert second.count('data-testid="entity-row"') == 12


def test_csrf_is_required_and_sessions_end(portal: dict[str, Any]) -> None:
    browser = _browser(portal, "admin")
    assert browser.post("/logout", data={}).status_code == 403
    assert browser.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert browser.get("/catalog").status_code == 200  # still signed in
    token = _csrf(browser.get("/catalog").text)
    assert browser.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert browser.get("/catalog", follow_redirects=False).status_code == 303  # revoked
    # Expiry: a session past its time is no session.
    browser = _browser(portal, "mia")
    engine = make_engine(portal["url"])
    with engine.begin() as conn:
        conn.execute(web_sessions.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    engine.dispose()
    assert browser.get("/catalog", follow_redirects=False).status_code == 303
    # Deleting the token ends the sessions opened with it.
    browser = _browser(portal, "oscar")
    api: TestClient = portal["api"]
    oscar = [t for t in _ok(api.get("/v1/tokens", params={"user": "oscar"}))["items"] if t["user"] == "oscar"]
    assert api.delete(f"/v1/tokens/{oscar[0]['id']}").status_code == 204
    assert browser.get("/catalog", follow_redirects=False).status_code == 303


def test_one_time_code_signs_in_once(portal: dict[str, Any]) -> None:
    api: TestClient = portal["api"]
    answer = _ok(api.post("/v1/ui/sign-in-codes"))
    assert answer["url"].endswith(f"/login?code={answer['code']}")
    member = TestClient(api.app)
    assert (
        member.post(
            "/v1/ui/sign-in-codes", headers={"Authorization": f"Bearer {portal['tokens']['mia']}"}
        ).status_code
        == 403
    )
    browser = TestClient(api.app, raise_server_exceptions=False)
    first = browser.get(f"/login?code={answer['code']}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/catalog"
    assert browser.get("/catalog").status_code == 200
    again = TestClient(api.app, raise_server_exceptions=False).get(
        f"/login?code={answer['code']}", follow_redirects=False
    )
    assert again.status_code == 400 and "gantry_session" not in again.headers.get("set-cookie", "")


@pytest.mark.parametrize("path", sorted(PORTAL_ACTIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_forms_for_the_example_portal_actions(path: Path) -> None:
    """Every input of the example portal's actions gets a labelled field of the right kind."""
    action = yaml.safe_load(path.read_text())
    schema = action.get("user_inputs") or {}

    class NoEntities:
        def get_bind(self) -> Any:
            return sa.create_engine("sqlite://")

        def scalars(self, _stmt: Any) -> list[str]:
            return ["payments"]

    fields = fields_of(NoEntities(), schema, Principal("admin", "admin"))  # type: ignore[arg-type]
    for field in fields:
        spec = schema["properties"][field.name]
        expected = (
            "select"
            if "enum" in spec
            else "entity"
            if spec.get("format") == "entity"
            else "number"
            if spec.get("type") in ("integer", "number")
            else "checkbox"
            if spec.get("type") == "boolean"
            else "text"
        )
        assert field.widget == expected, (field.name, field.widget)
        assert field.label and field.required is (field.name in schema.get("required", []))
        if "pattern" in spec:
            assert field.attrs["data-pattern"] == spec["pattern"]
        if "default" in spec:
            assert field.value == spec["default"]


def test_launch_form_generation_422_and_launch(portal: dict[str, Any]) -> None:
    browser = _browser(portal, "admin")
    form = browser.get("/actions/deploy/launch", params={"entity": "payments"})
    assert form.status_code == 200 and 'data-testid="action-form"' in form.text
    html = form.text
    assert 'name="version"' in html and 'data-pattern="^v[0-9]+$"' in html and "required" in html
    assert (
        '<select id="in-environment" name="environment"' in html
        and "<option selected>staging</option>" in html
    )
    assert 'type="number"' in html and 'min="1"' in html and 'max="5"' in html and 'value="2"' in html
    assert 'type="checkbox" id="in-dry" name="dry"' in html and 'type="password"' in html
    assert all(f'<label for="in-{n}">' in html for n in ("version", "environment", "replicas", "password"))
    token = _csrf(html)
    bad = browser.post(
        "/actions/deploy/launch",
        data={"csrf_token": token, "entity": "payments", "version": "1.0", "password": "hunter2"},
    )
    assert bad.status_code == 422 and 'id="error-version"' in bad.text
    assert "hunter2" not in bad.text  # secrets are never echoed back
    assert _ok(portal["api"].get("/v1/runs"))["items"] == []  # nothing launched
    good = browser.post(
        "/actions/deploy/launch",
        data={"csrf_token": token, "entity": "payments", "version": "v2", "replicas": "3", "dry": "on"},
        follow_redirects=False,
    )
    assert good.status_code == 303 and good.headers["location"].startswith("/runs/")
    run = _ok(portal["api"].get(good.headers["location"].replace("/runs/", "/v1/runs/")))
    assert run["source"] == "UI" and run["inputs"]["replicas"] == 3 and run["inputs"]["dry"] is True
    page = browser.get(good.headers["location"])
    assert 'data-testid="run-status"' in page.text and 'id="run-log"' in page.text
    log = browser.get(good.headers["location"] + "/log", params={"after": 0})
    assert log.status_code == 200 and log.json()["status"] == run["status"]


def test_member_sees_no_buttons_it_may_not_use_and_forged_posts_fail(portal: dict[str, Any]) -> None:
    admin = _browser(portal, "admin")
    token = _csrf(admin.get("/actions/deploy/launch?entity=payments").text)
    launched = admin.post(
        "/actions/deploy/launch",
        data={"csrf_token": token, "entity": "payments", "version": "v1"},
        follow_redirects=False,
    )
    run_url = launched.headers["location"]
    oscar = _browser(portal, "oscar")  # a member of no team: may not execute deploy on payments
    assert "/actions/deploy/launch" not in oscar.get("/catalog/service/payments").text
    forged = oscar.post(
        "/actions/deploy/launch",
        data={"csrf_token": _csrf(oscar.get("/catalog").text), "entity": "payments", "version": "v9"},
    )
    assert forged.status_code in (403, 404)
    run_page = oscar.get(run_url)
    assert run_page.status_code == 404 or 'data-testid="cancel-button"' not in run_page.text
    vera = _browser(portal, "vera")
    assert vera.get("/actions/deploy/launch?entity=payments").status_code in (403, 404)
    assert len(_ok(portal["api"].get("/v1/runs"))["items"]) == 1


def test_approvals_inbox_and_the_approver_filter(portal: dict[str, Any]) -> None:
    """The admin's own run is not in their inbox (self-approval refused) even when a stale
    approver row says otherwise; another admin's run is, and the decision goes through."""
    api: TestClient = portal["api"]
    _ok(api.post("/v1/users", json={"identifier": "ada", "email": "ada@x.io", "role": "admin"}))
    ada_token = _ok(api.post("/v1/tokens", json={"user": "ada"}))["token"]
    ada = {"Authorization": f"Bearer {ada_token}"}
    mine = _ok(api.post("/v1/actions/deploy/runs", json={"entity": "payments", "inputs": {"version": "v1"}}))
    theirs = _ok(
        api.post(
            "/v1/actions/deploy/runs", json={"entity": "payments", "inputs": {"version": "v2"}}, headers=ada
        )
    )
    portal["gateway"].requesters[mine["workflow_id"]] = "admin"
    engine = make_engine(portal["url"])
    with engine.begin() as conn:  # a record from before requesters were left out of approvers
        conn.execute(sa.insert(RunApprover).values(run_id=mine["id"], user="admin"))
        conn.execute(
            sa.update(Run)
            .where(Run.id == theirs["id"])
            .values(
                approval={"status": "PENDING", "eligible": ["admin", "mia"], "approvals": [], "declines": []}
            )
        )
    engine.dispose()
    listed = {r["id"] for r in _ok(api.get("/v1/runs", params={"approver": "me"}))["items"]}
    assert theirs["id"] in listed and mine["id"] not in listed
    browser = _browser(portal, "admin")
    inbox = browser.get("/approvals").text
    assert theirs["id"] in inbox and mine["id"] not in inbox and 'data-testid="approve-button"' in inbox
    decided = browser.post(
        f"/runs/{theirs['id']}/approval",
        data={"csrf_token": _csrf(inbox), "decision": "APPROVE", "comment": "ok", "back": "inbox"},
        follow_redirects=False,
    )
    assert decided.status_code == 303 and decided.headers["location"] == "/approvals"
    refused = browser.post(
        f"/runs/{mine['id']}/approval",
        data={"csrf_token": _csrf(inbox), "decision": "APPROVE", "comment": ""},
    )
    assert refused.status_code == 403 and "Decision refused" in refused.text


def _session_rows(portal: dict[str, Any]) -> list[Any]:
    engine = make_engine(portal["url"])
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(web_sessions.c.created_at, web_sessions.c.expires_at)))
    engine.dispose()
    return rows


def test_the_session_lifetime_defaults_to_twelve_hours_and_is_read_from_the_environment(
    portal: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _browser(portal, "mia")
    (row,) = _session_rows(portal)
    assert row.expires_at - row.created_at == timedelta(hours=12)
    monkeypatch.setenv("GANTRY_WEB_SESSION_TTL", "900")
    assert Settings().web_session_ttl == 900
    for wrong in ("0", "2592001", "12h"):
        monkeypatch.setenv("GANTRY_WEB_SESSION_TTL", wrong)
        with pytest.raises(ValueError, match="web_session_ttl"):
            Settings()


@pytest.mark.parametrize("portal", [{"web_session_ttl": 1}], indirect=True)
def test_an_expired_session_leads_to_sign_in(portal: dict[str, Any]) -> None:
    """GANTRY_WEB_SESSION_TTL=1: the cookie and the stored session last one second; after it the
    server refuses the cookie (sent by hand: the client's jar would drop it by itself), a page
    leads to sign-in saying why, and a form POST does nothing."""
    visitor = TestClient(portal["api"].app, raise_server_exceptions=False)
    signed = visitor.post("/login", data={"token": portal["tokens"]["mia"]}, follow_redirects=False)
    assert signed.status_code == 303 and "Max-Age=1;" in signed.headers["set-cookie"]
    cookie = {"Cookie": f"{COOKIE}={signed.cookies[COOKIE]}"}
    page = TestClient(portal["api"].app, raise_server_exceptions=False)
    (row,) = _session_rows(portal)
    assert row.expires_at - row.created_at == timedelta(seconds=1)
    csrf = _csrf(page.get("/catalog", headers=cookie).text) if utcnow() < row.expires_at else "late"
    time.sleep(max(0.0, (row.expires_at - utcnow()).total_seconds()) + 0.05)
    ended = page.get("/runs", headers=cookie, follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"] == "/login?next=%2Fruns&ended=1"
    assert f'{COOKIE}=""' in ended.headers["set-cookie"]  # the stale cookie is dropped
    notice = page.get(ended.headers["location"])
    assert 'data-testid="signin-notice"' in notice.text and "Your session has ended" in notice.text
    launch = page.post(
        "/actions/deploy/launch",
        data={"csrf_token": csrf, "entity": "payments", "version": "v1"},
        headers=cookie,
    )
    assert launch.status_code == 403 and "signed out" in launch.text
    signing_out = page.post("/logout", data={"csrf_token": csrf}, headers=cookie, follow_redirects=False)
    assert signing_out.status_code == 303 and signing_out.headers["location"] == "/login?ended=1"
    assert _ok(portal["api"].get("/v1/runs"))["items"] == []


@pytest.mark.parametrize("portal", [{"rate_limit_launches": "2/1h"}], indirect=True)
def test_web_launches_share_the_tokens_launch_rate_limit_with_the_api(portal: dict[str, Any]) -> None:
    """Two launches an hour for a member: one through the API and one from the form use the
    token's budget; the next form launch says so and launches nothing; the API refuses too."""
    api: TestClient = portal["api"]
    mia = {"Authorization": f"Bearer {portal['tokens']['mia']}"}
    body = {"entity": "payments", "inputs": {"version": "v1"}}
    assert api.post("/v1/actions/deploy/runs", json=body, headers=mia).status_code == 202
    browser = _browser(portal, "mia")
    token = _csrf(browser.get("/actions/deploy/launch", params={"entity": "payments"}).text)
    form = {"csrf_token": token, "entity": "payments", "version": "v2"}
    launched = browser.post("/actions/deploy/launch", data=form, follow_redirects=False)
    assert launched.status_code == 303 and launched.headers["location"].startswith("/runs/")
    over = browser.post("/actions/deploy/launch", data={**form, "version": "v3"})
    assert over.status_code == 429 and int(over.headers["retry-after"]) > 0
    assert "Nothing was launched: rate limit exceeded: 2 launches per 3600 s" in over.text
    assert "GANTRY_RATE_LIMIT_LAUNCHES" in over.text
    assert 'data-testid="action-form"' in over.text and 'value="v3"' in over.text  # kept for later
    assert len(_ok(api.get("/v1/runs"))["items"]) == 2
    assert api.post("/v1/actions/deploy/runs", json=body, headers=mia).status_code == 429
    admin = _browser(portal, "admin")  # another token, another budget
    admin_form = {**form, "csrf_token": _csrf(admin.get("/catalog").text)}
    assert admin.post("/actions/deploy/launch", data=admin_form, follow_redirects=False).status_code == 303


def _seed_initiative(portal: dict[str, Any]) -> None:
    """Saved as the API saves one (its workflow's part needs Temporal: not here)."""
    body = {
        "identifier": "ready",
        "title": "Ready <b>now</b>",
        "description": "Every service **Gold**.",
        "owner": {"teams": ["payments-team"]},
        "targets": [{"blueprint": "service", "scorecard": "readiness", "level": "Gold"}],
        "starts_at": format_instant(utcnow() - timedelta(days=3)),
        "deadline": format_instant(utcnow() + timedelta(days=30)),
    }
    app: Any = portal["api"].app
    with app.state.sessionmaker() as session:
        initiatives.save(session, InitiativeIn(**body), Actor("admin"), Principal("admin", "admin"))
        session.commit()


def test_scorecards_show_initiatives_and_an_initiative_its_progress_per_team(portal: dict[str, Any]) -> None:
    _seed_initiative(portal)
    for user in ("admin", "mia", "vera"):
        browser = _browser(portal, user)
        for path in ("/scorecards", "/scorecards/service/readiness"):
            html = browser.get(path).text
            assert 'data-initiative="ready"' in html and 'href="/initiatives/ready"' in html, path
            assert "Ready &lt;b&gt;now&lt;/b&gt;" in html and "<b>now" not in html
            assert 'max="2" value="1"' in html and "1 of 2 (50%)" in html  # payments is Gold, search not
        page = browser.get("/initiatives/ready")
        assert page.status_code == 200
        html = page.text
        assert "<strong>Gold</strong>" in html and 'data-testid="initiative-progress"' in html
        payments_team = re.search(r'<tr data-team="payments-team"[^>]*>(.*?)</tr>', html, re.S)
        nobody = re.search(r'<tr data-team=""[^>]*>(.*?)</tr>', html, re.S)
        assert payments_team and "1 of 1" in payments_team.group(1)
        assert ("(your team)" in payments_team.group(1)) is (user == "mia")
        assert nobody and "No owning team" in nobody.group(1) and "0 of 1" in nobody.group(1)
        failing = html.split('data-testid="initiative-failing"')[1]
        assert 'href="/catalog/service/search"' in failing and "has_repo" in failing
        assert 'href="/catalog/service/payments"' not in failing
        assert 'data-testid="initiative-burn-down"' in html
        assert browser.get("/initiatives/nope").status_code == 404
        drill = browser.get("/scorecards/service/readiness", params={"rule": "has_repo"}).text
        failing_rule = drill.split('data-testid="failing-entities"')[1].split("</ul>")[0]
        assert 'href="/catalog/service/search"' in failing_rule and "payments" not in failing_rule


def test_an_exemption_asked_from_the_entity_page_is_checked_as_the_api_checks_it(
    portal: dict[str, Any],
) -> None:
    """The form's refusals: not a date, more than a year ahead (the API's own check, by pointer),
    a viewer; nothing is requested. The rule's form shows only to who may ask."""
    api: TestClient = portal["api"]
    _ok(api.patch("/v1/blueprints/service/entities/payments", json={"properties": {"repo": None}}))
    mia, vera = _browser(portal, "mia"), _browser(portal, "vera")
    page = mia.get("/catalog/service/payments").text
    assert 'data-testid="exemption-form"' in page and 'name="until" value="' in page
    assert 'data-testid="exemption-form"' not in vera.get("/catalog/service/payments").text
    url = "/catalog/service/payments/scorecards/readiness/exemptions"
    form = {"csrf_token": _csrf(page), "rule": "has_repo", "reason": "moving"}
    not_a_date = mia.post(url, data={**form, "until": "soon"})
    assert not_a_date.status_code == 422 and "must be a date" in not_a_date.text
    far = (utcnow() + timedelta(days=800)).date().isoformat()
    too_far = mia.post(url, data={**form, "until": far})
    assert too_far.status_code == 422 and "at most a year" in too_far.text
    viewer = vera.post(
        url, data={**form, "csrf_token": _csrf(vera.get("/catalog").text), "until": "2030-01-01"}
    )
    assert viewer.status_code == 403
    listed = _ok(api.get("/v1/blueprints/service/scorecards/readiness/exemptions"))["items"]
    assert listed == []


def test_the_run_page_links_parent_and_child_runs_and_shows_each_steps_needs(portal: dict[str, Any]) -> None:
    api = portal["api"]
    body = {"entity": "payments", "inputs": {"version": "v2"}}
    parent, child = (_ok(api.post("/v1/actions/deploy/runs", json=body)) for _ in range(2))
    engine = make_engine(portal["url"])
    with engine.begin() as conn:  # as a sub-action step records its child, and a graph its needs
        steps = [{**parent["steps"][0], "needs": ["build", "scan"]}, *parent["steps"][1:]]
        conn.execute(sa.update(Run).where(Run.id == parent["id"]).values(steps=steps))
        conn.execute(sa.update(Run).where(Run.id == child["id"]).values(parent_run_id=parent["id"]))
    engine.dispose()
    browser = _browser(portal, "admin")
    page = browser.get(f"/runs/{parent['id']}").text
    assert 'data-testid="child-runs"' in page and f'<a href="/runs/{child["id"]}">' in page
    assert '<small class="muted" data-testid="step-needs">after build, scan</small>' in page
    child_page = browser.get(f"/runs/{child['id']}").text
    assert f'<a href="/runs/{parent["id"]}" data-testid="parent-run">' in child_page


def test_a_scorecard_page_counts_as_the_api_and_lists_the_first_failing_entities(
    portal: dict[str, Any],
) -> None:
    api = portal["api"]
    batch = [{"identifier": f"bulk-{i:03}", "properties": {"language": "go"}} for i in range(205)]
    _ok(api.post("/v1/blueprints/service/entities/bulk", json={"entities": batch}))
    results = _ok(api.get("/v1/blueprints/service/scorecards/readiness/results", params={"limit": 1000}))
    failing = [i["entity"] for i in results["items"] if not i["rules"]["has_repo"]]
    assert len(failing) == 206 and results["total"] == 207  # the bulk ones and "search" fail
    browser = _browser(portal, "admin")
    html = browser.get("/scorecards/service/readiness", params={"rule": "has_repo"}).text
    assert f"Levels ({results['total']} entities)" in html
    for level, count in results["distribution"].items():
        assert f">{level}: {count}</a>" in html
    passing = re.search(
        r'href="\?rule=has_repo#failing">has_repo</a></td><td>Gold</td><td class="num">(\d+)<', html
    )
    assert passing and int(passing.group(1)) == results["rules"][0]["passed"] == 1
    listed = re.findall(
        r'<li><a href="/catalog/service/([^"]+)">', html.split('data-testid="failing-entities"')[1]
    )
    assert listed == sorted(failing)[:200]  # identifier order, cut at the page's limit
    assert "The first 200 are shown." in html


def test_people_and_teams_show_by_name_in_the_table_and_on_the_entity_page(portal: dict[str, Any]) -> None:
    api = portal["api"]
    properties = {"language": "go", "on_call": "mia@x.io", "owner_team": "payments-team"}
    entity = {"identifier": "ledger", "team": ["payments-team"], "properties": properties}
    _ok(api.post("/v1/blueprints/service/entities", json=entity))
    browser = _browser(portal, "admin")
    table = browser.get("/catalog/service", params={"q": "ledger", "cols": "on_call,owner_team"}).text
    row = table.split('href="/catalog/service/ledger"')[1].split("</tr>")[0]
    assert "<td>mia</td>" in row and "<td>Payments</td>" in row and "mia@x.io" not in row
    page = browser.get("/catalog/service/ledger").text
    owners = page.split("<dt>Owners</dt>")[1].split("</dd>")[0]
    assert "Payments" in owners and "payments-team" not in owners
    assert ">mia<" in page and "mia@x.io" not in page
