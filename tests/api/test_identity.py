"""Users, teams, API tokens and ``/v1/me`` through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, text

from api.app import ADMIN_USER, SERVICE_USER, create_app
from catalog.identity.permissions import Policy, Principal, is_moderator, passes
from catalog.identity.service import user_by_email
from catalog.models import Blueprint
from config import Settings
from tests.api.conftest import ADMIN_TOKEN, SERVICE_TOKEN


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def make_member(client: TestClient, identifier: str = "bob", teams: list[str] | None = None) -> str:
    """Create a member and return the secret of a token of theirs."""
    user = {
        "identifier": identifier,
        "email": f"{identifier}@example.com",
        "name": identifier.title(),
        "teams": teams or [],
    }
    assert client.post("/v1/users", json=user).status_code == 201
    created = client.post("/v1/tokens", json={"user": identifier, "description": "test"})
    assert created.status_code == 201, created.text
    secret: str = created.json()["token"]
    return secret


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_bootstrap_admin_and_service_users(client: TestClient) -> None:
    for identifier, role in ((ADMIN_USER, "admin"), (SERVICE_USER, "service")):
        user = client.get(f"/v1/users/{identifier}")
        assert user.status_code == 200 and user.json()["role"] == role
    me = client.get("/v1/me", headers=bearer(SERVICE_TOKEN)).json()
    assert me["identifier"] == SERVICE_USER and me["role"] == "service"
    assert client.get("/v1/me").json() == {
        "identifier": ADMIN_USER,
        "email": "admin@gantry.local",
        "name": "Admin",
        "role": "admin",
        "teams": [],
    }


def test_team_crud(client: TestClient) -> None:
    created = client.post("/v1/teams", json={"identifier": "platform", "title": "Platform"})
    assert created.status_code == 201
    assert created.json() == {"identifier": "platform", "title": "Platform", "description": ""}
    assert client.post("/v1/teams", json={"identifier": "platform", "title": "Again"}).status_code == 409

    patched = client.patch("/v1/teams/platform", json={"description": "The platform team"})
    assert patched.status_code == 200 and patched.json()["title"] == "Platform"
    assert client.get("/v1/teams/platform").json()["description"] == "The platform team"
    assert [t["identifier"] for t in client.get("/v1/teams").json()["items"]] == ["platform"]

    assert client.delete("/v1/teams/platform").status_code == 204
    assert client.get("/v1/teams/platform").status_code == 404
    assert client.patch("/v1/teams/platform", json={"title": "X"}).status_code == 404


def test_user_crud_and_membership_lives_on_the_user(client: TestClient) -> None:
    for team in ("platform", "payments"):
        client.post("/v1/teams", json={"identifier": team, "title": team.title()})
    body = {"identifier": "alice", "email": "alice@example.com", "name": "Alice", "teams": ["platform"]}
    created = client.post("/v1/users", json=body)
    assert created.status_code == 201
    assert created.json() == {**body, "role": "member"}
    assert client.post("/v1/users", json=body).status_code == 409
    taken = client.post("/v1/users", json={**body, "identifier": "alice2"})
    assert taken.status_code == 409 and taken.json()["error"]["details"][0]["pointer"] == "/email"

    unknown = client.patch("/v1/users/alice", json={"teams": ["platform", "ghosts"]})
    assert unknown.status_code == 422
    assert [d["pointer"] for d in unknown.json()["error"]["details"]] == ["/teams/1"]
    assert client.get("/v1/users/alice").json()["teams"] == ["platform"]

    moved = client.patch("/v1/users/alice", json={"teams": ["payments", "platform"], "role": "admin"})
    assert moved.status_code == 200
    assert moved.json()["teams"] == ["payments", "platform"] and moved.json()["role"] == "admin"
    in_payments = client.get("/v1/users", params={"team": "payments"}).json()["items"]
    assert [u["identifier"] for u in in_payments] == ["alice"]

    # Deleting a team drops the membership from its users.
    assert client.delete("/v1/teams/payments").status_code == 204
    assert client.get("/v1/users/alice").json()["teams"] == ["platform"]

    assert client.delete("/v1/users/alice").status_code == 204
    assert client.get("/v1/users/alice").status_code == 404
    assert client.delete("/v1/users/alice").status_code == 404
    listed = {u["identifier"] for u in client.get("/v1/users").json()["items"]}
    assert listed == {ADMIN_USER, SERVICE_USER}


def test_token_is_shown_once_and_stored_hashed(client: TestClient, engine: Engine) -> None:
    client.post("/v1/users", json={"identifier": "bob", "email": "bob@example.com"})
    created = client.post("/v1/tokens", json={"user": "bob", "description": "ci"})
    assert created.status_code == 201
    token = created.json()
    assert set(token) >= {"id", "token", "user", "expires_at"} and token["user"] == "bob"
    secret = token["token"]

    listed = client.get("/v1/tokens", params={"for_user": "bob"}).json()["items"]
    assert [t["id"] for t in listed] == [token["id"]]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert secret not in client.get("/v1/tokens").text

    with engine.connect() as conn:
        stored = (
            conn.execute(text("SELECT * FROM api_tokens WHERE id = :id"), {"id": token["id"]})
            .mappings()
            .one()
        )
        dump = " ".join(str(v) for v in stored.values())
        everything = " ".join(str(r) for r in conn.execute(text("SELECT * FROM api_tokens")))
        audit = " ".join(str(r) for r in conn.execute(text("SELECT * FROM audit_log")))
    assert stored["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in dump and secret not in everything and secret not in audit
    assert ADMIN_TOKEN not in everything and ADMIN_TOKEN not in audit

    assert client.get("/v1/me", headers=bearer(secret)).json()["identifier"] == "bob"


def test_expired_token_is_refused(client: TestClient, engine: Engine) -> None:
    client.post("/v1/users", json={"identifier": "bob", "email": "bob@example.com"})
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = client.post("/v1/tokens", json={"user": "bob", "expires_at": soon}).json()
    assert client.get("/v1/me", headers=bearer(created["token"])).status_code == 200

    past = client.post("/v1/tokens", json={"user": "bob", "expires_at": "2001-01-01T00:00:00Z"})
    assert past.status_code == 422 and past.json()["error"]["details"][0]["pointer"] == "/expires_at"
    naive = client.post("/v1/tokens", json={"user": "bob", "expires_at": "2999-01-01T00:00:00"})
    assert naive.status_code == 422

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET expires_at = :at WHERE id = :id"),
            # naive and long past: it reads the same on SQLite and in any PostgreSQL time zone
            {"at": datetime(2001, 1, 1), "id": created["id"]},
        )
    expired = client.get("/v1/me", headers=bearer(created["token"]))
    assert expired.status_code == 401 and error_code(expired) == "unauthenticated"


def test_revoked_and_unknown_tokens_are_refused(client: TestClient) -> None:
    secret = make_member(client)
    token_id = client.get("/v1/tokens", params={"for_user": "bob"}).json()["items"][0]["id"]
    assert client.get("/v1/me", headers=bearer(secret)).status_code == 200
    assert client.delete(f"/v1/tokens/{token_id}").status_code == 204
    assert client.get("/v1/me", headers=bearer(secret)).status_code == 401
    assert client.delete(f"/v1/tokens/{token_id}").status_code == 404

    assert client.get("/v1/me", headers=bearer("gnt_not-a-token")).status_code == 401
    assert client.get("/v1/me", headers={"Authorization": ""}).status_code == 401
    assert client.get("/v1/me", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}).status_code == 401


def test_deleting_a_user_revokes_their_tokens(client: TestClient) -> None:
    secret = make_member(client)
    assert client.delete("/v1/users/bob").status_code == 204
    assert client.get("/v1/me", headers=bearer(secret)).status_code == 401


def test_member_manages_only_their_own_tokens(client: TestClient) -> None:
    bob = make_member(client, "bob")
    make_member(client, "carol")
    carol_token = client.get("/v1/tokens", params={"for_user": "carol"}).json()["items"][0]["id"]

    own = client.post("/v1/tokens", json={"user": "bob", "description": "laptop"}, headers=bearer(bob))
    assert own.status_code == 201 and own.json()["user"] == "bob"
    other = client.post("/v1/tokens", json={"user": "carol"}, headers=bearer(bob))
    assert other.status_code == 403 and error_code(other) == "forbidden"

    # A member sees their own tokens only; asking for someone else's is refused, not ignored.
    for params in ({}, {"for_user": "bob"}):
        listed = client.get("/v1/tokens", params=params, headers=bearer(bob)).json()["items"]
        assert {t["user"] for t in listed} == {"bob"} and len(listed) == 2
    others = client.get("/v1/tokens", params={"for_user": "carol"}, headers=bearer(bob))
    assert others.status_code == 403 and error_code(others) == "forbidden"
    assert carol_token not in others.text

    refused = client.delete(f"/v1/tokens/{carol_token}", headers=bearer(bob))
    assert refused.status_code == 404
    assert carol_token in {
        t["id"] for t in client.get("/v1/tokens", params={"for_user": "carol"}).json()["items"]
    }
    assert client.delete(f"/v1/tokens/{own.json()['id']}", headers=bearer(bob)).status_code == 204

    # The admin sees everyone's.
    users = {t["user"] for t in client.get("/v1/tokens").json()["items"]}
    assert {"bob", "carol", ADMIN_USER, SERVICE_USER} <= users


def test_admin_only_writes_are_forbidden_to_members(client: TestClient) -> None:
    client.post("/v1/teams", json={"identifier": "platform", "title": "Platform"})
    bob = bearer(make_member(client, "bob", teams=["platform"]))
    writes = [
        ("POST", "/v1/users", {"identifier": "eve", "email": "eve@example.com"}),
        ("PATCH", "/v1/users/bob", {"role": "admin"}),
        ("DELETE", "/v1/users/admin", None),
        ("POST", "/v1/teams", {"identifier": "rogue", "title": "Rogue"}),
        ("PATCH", "/v1/teams/platform", {"title": "Mine"}),
        ("DELETE", "/v1/teams/platform", None),
        ("POST", "/v1/blueprints", {"identifier": "thing", "title": "Thing"}),
    ]
    for method, url, body in writes:
        response = client.request(method, url, json=body, headers=bob)
        assert response.status_code == 403, (method, url, response.text)
        assert error_code(response) == "forbidden"
    me = client.get("/v1/me", headers=bob).json()
    assert me["role"] == "member" and me["teams"] == ["platform"]
    assert client.get("/v1/users/eve").status_code == 404
    assert client.get("/v1/teams/rogue").status_code == 404
    assert client.get("/v1/teams/platform").json()["title"] == "Platform"
    # Reads are open to members.
    assert client.get("/v1/users", headers=bob).status_code == 200
    assert client.get("/v1/teams", headers=bob).status_code == 200


# ---- emails are one case-insensitively ------------------------------------------------------


def test_emails_are_unique_whatever_their_case(client: TestClient) -> None:
    created = client.post("/v1/users", json={"identifier": "alice", "email": "Alice@Example.com"})
    assert created.status_code == 201 and created.json()["email"] == "alice@example.com"
    again = client.post("/v1/users", json={"identifier": "alice2", "email": "alice@EXAMPLE.com"})
    assert again.status_code == 409
    assert again.json()["error"]["details"][0]["pointer"] == "/email"
    client.post("/v1/users", json={"identifier": "bob", "email": "bob@example.com"})
    taken = client.patch("/v1/users/bob", json={"email": "ALICE@example.com"})
    assert taken.status_code == 409 and client.get("/v1/users/bob").json()["email"] == "bob@example.com"
    # Changing only the case of one's own email is no conflict; it is stored lower-cased.
    own = client.patch("/v1/users/alice", json={"email": "ALICE@example.COM"})
    assert own.status_code == 200 and own.json()["email"] == "alice@example.com"
    listed = [u["email"] for u in client.get("/v1/users").json()["items"] if u["identifier"] != ADMIN_USER]
    assert listed == ["alice@example.com", "bob@example.com", "worker@gantry.local"]


def test_a_user_reference_by_email_matches_any_case(catalog: TestClient) -> None:
    """``format: user`` properties name a user by identifier or by email, in any case."""
    for on_call in ("BOB@example.com", "bob@example.com", "bob"):
        created = catalog.post(
            "/v1/blueprints/service/entities?upsert=true",
            json={"identifier": "payments", "properties": {"language": "go", "on_call": on_call}},
        )
        assert created.status_code in (200, 201), created.text
    unknown = catalog.post(
        "/v1/blueprints/service/entities",
        json={"identifier": "ledger", "properties": {"language": "go", "on_call": "Nobody@example.com"}},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["pointer"] == "/properties/on_call"


def test_user_by_email_ignores_case(client: TestClient) -> None:
    """The lookup the Slack interactions use to map a Slack account to a Gantry user."""
    client.post("/v1/users", json={"identifier": "alice", "email": "alice@example.com"})
    app = client.app
    with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        for email in ("alice@example.com", "Alice@Example.COM", " alice@example.com "):
            found = user_by_email(session, email)
            assert found is not None and found.identifier == "alice", email
        assert user_by_email(session, "alicia@example.com") is None


# ---- who may read what ----------------------------------------------------------------------


def test_audit_and_event_logs_are_admin_only(client: TestClient) -> None:
    client.post("/v1/teams", json={"identifier": "platform", "title": "Platform"})
    member = bearer(make_member(client, "bob", teams=["platform"]))
    client.post("/v1/users", json={"identifier": "vera", "email": "vera@example.com", "role": "viewer"})
    viewer = bearer(client.post("/v1/tokens", json={"user": "vera"}).json()["token"])
    for url in ("/v1/audit-log", "/v1/events"):
        assert client.get(url).status_code == 200
        for who in (member, viewer, bearer(SERVICE_TOKEN)):
            refused = client.get(url, headers=who)
            assert refused.status_code == 403 and error_code(refused) == "forbidden", (url, refused.text)
        assert client.get(url, headers={"Authorization": ""}).status_code == 401


def test_viewers_read_and_manage_their_own_tokens_only(client: TestClient) -> None:
    client.post("/v1/teams", json={"identifier": "platform", "title": "Platform"})
    client.post("/v1/users", json={"identifier": "vera", "email": "vera@example.com", "role": "viewer"})
    vera = bearer(client.post("/v1/tokens", json={"user": "vera"}).json()["token"])
    # Reading needs a token, so a viewer may make (and revoke) their own.
    own = client.post("/v1/tokens", json={"user": "vera", "description": "cli"}, headers=vera)
    assert own.status_code == 201
    assert client.post("/v1/tokens", json={"user": "admin"}, headers=vera).status_code == 403
    assert client.delete(f"/v1/tokens/{own.json()['id']}", headers=vera).status_code == 204
    # Users and teams are readable (pickers need names); writing them is for admins.
    assert client.get("/v1/users", headers=vera).status_code == 200
    assert client.get("/v1/teams/platform", headers=vera).status_code == 200
    assert client.post("/v1/teams", json={"identifier": "x", "title": "X"}, headers=vera).status_code == 403


def test_the_service_principal_mints_no_tokens(client: TestClient) -> None:
    service = bearer(SERVICE_TOKEN)
    for user in (SERVICE_USER, ADMIN_USER):
        refused = client.post("/v1/tokens", json={"user": user}, headers=service)
        assert refused.status_code == 403, refused.text
    assert {t["user"] for t in client.get("/v1/tokens").json()["items"]} == {ADMIN_USER, SERVICE_USER}


# ---- bootstrap tokens and production secrets ------------------------------------------------


def test_unsetting_the_admin_token_revokes_it(settings: Settings) -> None:
    with TestClient(create_app(settings), raise_server_exceptions=False) as first:
        assert first.get("/v1/me", headers=bearer(ADMIN_TOKEN)).status_code == 200
    unset = settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(unset), raise_server_exceptions=False) as second:
        refused = second.get("/v1/me", headers=bearer(ADMIN_TOKEN))
        assert refused.status_code == 401 and error_code(refused) == "unauthenticated"
        assert second.get("/v1/me", headers=bearer(SERVICE_TOKEN)).status_code == 200


STRONG = {
    "service_token": "s" * 8 + "0f3c9a7e5b1d4f2a8c6e0b9d7f5a3c1e",
    "secret_key": "k" * 8 + "9b7d5f3a1c8e6b4d2f0a9c7e5b3d1f8a",
    "webhook_secret": "w" * 8 + "4e2c0a8f6d4b2e0c8a6f4d2b0e8c6a4f",
    "database_url": "postgresql+psycopg://gantry@db/gantry",
}


def test_production_accepts_long_distinct_secrets() -> None:
    settings = Settings.model_validate({**STRONG, "environment": "Production"})
    assert settings.environment == "production"
    assert Settings.model_validate({"environment": "DEVELOPMENT"}).environment == "development"


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"service_token": None}, "GANTRY_SERVICE_TOKEN must be set"),
        ({"secret_key": "short-but-real"}, "GANTRY_SECRET_KEY is 14 characters"),
        ({"admin_token": "admin"}, "GANTRY_ADMIN_TOKEN is 5 characters"),
        ({"slack_signing_secret": "x" * 31}, "GANTRY_SLACK_SIGNING_SECRET is 31 characters"),
        ({"webhook_secret": "change-me-" * 4}, "GANTRY_WEBHOOK_SECRET holds the placeholder 'changeme'"),
        (
            {"admin_token": STRONG["service_token"]},
            "GANTRY_ADMIN_TOKEN must differ from GANTRY_SERVICE_TOKEN",
        ),
    ],
)
def test_production_refuses_missing_short_and_default_secrets(changes: dict[str, Any], variable: str) -> None:
    fields = {**STRONG, "environment": "production", **changes}
    with pytest.raises(ValidationError, match=re.escape(variable)):
        Settings.model_validate({k: v for k, v in fields.items() if v is not None})


def test_an_unknown_environment_is_an_error() -> None:
    """``prod`` used to pass as "not production" and start without any secret."""
    with pytest.raises(ValidationError, match="environment"):
        Settings.model_validate({"environment": "prod"})


def test_policies_and_moderators_name_users_by_email_in_any_case() -> None:
    alice = Principal("alice", "member", "alice@example.com", frozenset())
    assert passes(Policy(users=["Alice@Example.com"]), alice)
    assert passes(Policy(users=["alice"]), alice)
    assert not passes(Policy(users=["alicia@example.com", "ALICE"]), alice)
    blueprint = Blueprint(identifier="cluster", moderators={"users": ["ALICE@example.com"], "teams": []})
    assert is_moderator(blueprint, alice)
    assert not is_moderator(blueprint, Principal("bob", "member", "bob@example.com", frozenset()))
