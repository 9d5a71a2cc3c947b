"""Data-source definitions through the API: saved as given, every jq program compiled when
saved, no credentials in config, preview writes nothing, moderators limited to their blueprints."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.sources.catalog_fixtures import MAPPINGS, api, github_source, repo, settings

__all__ = ["api", "settings"]


def _details(response: Any) -> dict[str, str]:
    return {d["pointer"]: d["message"] for d in response.json()["error"]["details"]}


def test_a_definition_is_saved_as_given_and_audited(api: TestClient) -> None:
    created = api.post("/v1/data-sources", json=github_source())
    assert created.status_code == 201, created.text
    body = api.get("/v1/data-sources/github_acme").json()
    assert body["resources"][0]["port"]["entity"]["mappings"] == MAPPINGS
    assert body["resources"][0]["selector"] == {"query": ".archived == false"}
    assert api.post("/v1/data-sources", json=github_source()).status_code == 409
    changed = api.put("/v1/data-sources/github_acme", json=github_source(title="Acme on GitHub"))
    assert changed.status_code == 200 and changed.json()["title"] == "Acme on GitHub"
    audit = api.get("/v1/audit-log", params={"resource_type": "data_source"}).json()["items"]
    assert [a["operation"] for a in audit] == ["UPDATE", "CREATE"]
    assert api.delete("/v1/data-sources/github_acme").status_code == 204
    assert api.get("/v1/data-sources/github_acme").status_code == 404


def test_a_bad_jq_program_is_a_422_at_its_pointer_and_nothing_is_saved(api: TestClient) -> None:
    bad = github_source()
    bad["resources"][0]["port"]["entity"]["mappings"] = {**MAPPINGS, "properties": {"url": ".html_url |"}}
    bad["resources"][0]["selector"] = {"query": ".archived =="}
    response = api.post("/v1/data-sources", json=bad)
    assert response.status_code == 422
    details = _details(response)
    assert "syntax error" in details["/resources/0/port/entity/mappings/properties/url"]
    assert "syntax error" in details["/resources/0/selector/query"]
    assert api.get("/v1/data-sources/github_acme").status_code == 404


def test_credentials_in_config_are_refused(api: TestClient) -> None:
    for config, where in (
        ({"org": "acme", "token": "ghp_x"}, "/config/token"),
        ({"auth": {"password": "x"}}, "/config/auth/password"),
        ({"clientSecret": "x"}, "/config/clientSecret"),
        ({"api-key": "x"}, "/config/api-key"),
    ):
        response = api.post("/v1/data-sources", json=github_source(config=config))
        assert response.status_code == 422, config
        assert "never from the config" in _details(response)[where]


def test_other_save_time_checks(api: TestClient) -> None:
    unknown = github_source()
    unknown["resources"][0]["port"]["entity"]["mappings"] = {**MAPPINGS, "blueprint": '"nope"'}
    cases = [
        (github_source(schedule="every hour"), "/schedule"),
        (github_source(schedule="PT5S"), "/schedule"),
        (github_source(kind="webhook"), "/security"),
        (
            github_source(kind="webhook", security={"secret_env": "AWS_SECRET_ACCESS_KEY"}),
            "/security/secret_env",
        ),
        (unknown, "/resources/0/port/entity/mappings/blueprint"),
    ]
    for body, where in cases:
        response = api.post("/v1/data-sources", json=body)
        assert response.status_code == 422, (body, response.text)
        assert where in _details(response), response.text


def test_preview_maps_and_validates_but_writes_nothing(api: TestClient) -> None:
    assert api.post("/v1/data-sources", json=github_source()).status_code == 201
    items = [repo("api"), repo("legacy", language="cobol"), repo("old", archived=True)]
    response = api.post("/v1/data-sources/github_acme/preview", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [e["identifier"] for e in body["entities"]] == ["api"]
    assert body["entities"][0]["properties"] == {"repo": "https://github.com/acme/api", "language": "python"}
    (error,) = body["errors"]
    assert error["key"] == "legacy" and error["pointer"] == "/properties/language"
    # nothing written: no entity, not even the missing related `billing` system
    assert api.get("/v1/blueprints/service/entities").json()["items"] == []
    assert api.get("/v1/blueprints/system/entities").json()["items"] == []
    assert api.get("/v1/audit-log", params={"resource_type": "entity"}).json()["items"] == []
    by_kind = api.post("/v1/data-sources/github_acme/preview", json={"resource": "repository", "items": []})
    assert by_kind.status_code == 200
    unknown = api.post("/v1/data-sources/github_acme/preview", json={"resource": 3, "items": []})
    assert unknown.status_code == 422 and "/resource" in _details(unknown)


def _member(api: TestClient, identifier: str, teams: list[str]) -> dict[str, str]:
    user = {"identifier": identifier, "email": f"{identifier}@example.com", "teams": teams}
    assert api.post("/v1/users", json=user).status_code == 201
    token = api.post("/v1/tokens", json={"user": identifier}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_moderators_define_sources_of_their_blueprints_only(api: TestClient) -> None:
    assert api.post("/v1/teams", json={"identifier": "platform", "title": "Platform"}).status_code == 201
    assert (
        api.patch("/v1/blueprints/service", json={"moderators": {"teams": ["platform"]}}).status_code == 200
    )
    mo = _member(api, "mo", ["platform"])
    mine = github_source(create_missing_related_entities=False)
    assert api.post("/v1/data-sources", json=mine, headers=mo).status_code == 201
    computed = github_source("dynamic")
    computed["resources"][0]["port"]["entity"]["mappings"] = {**MAPPINGS, "blueprint": ".kind"}
    refused = api.post("/v1/data-sources", json=computed, headers=mo)
    assert refused.status_code == 403 and "only admins" in refused.json()["error"]["message"]
    system = github_source("systems")
    system["resources"][0]["port"]["entity"]["mappings"] = {"identifier": ".name", "blueprint": '"system"'}
    assert api.post("/v1/data-sources", json=system, headers=mo).status_code == 403
    assert api.post("/v1/data-sources", json=system).status_code == 201  # the admin may
    # mo sees the source they administer, not the admin's
    listed = api.get("/v1/data-sources", headers=mo).json()["items"]
    assert [s["identifier"] for s in listed] == ["github_acme"]
    assert api.get("/v1/data-sources/systems", headers=mo).status_code == 404


def test_moderators_may_not_create_missing_entities_in_blueprints_they_do_not_moderate(
    api: TestClient,
) -> None:
    assert api.post("/v1/teams", json={"identifier": "platform", "title": "Platform"}).status_code == 201
    assert (
        api.patch("/v1/blueprints/service", json={"moderators": {"teams": ["platform"]}}).status_code == 200
    )
    mo = _member(api, "mo", ["platform"])
    # the mapping's `system` relation points to `system`, which mo does not moderate
    refused = api.post("/v1/data-sources", json=github_source(), headers=mo)
    assert refused.status_code == 403
    allowed = github_source(create_missing_related_entities=False)
    assert api.post("/v1/data-sources", json=allowed, headers=mo).status_code == 201
