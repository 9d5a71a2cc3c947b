"""A re-sync compares each mapped entity with its stored row and skips the write path when the
write would change nothing; anything it cannot vouch for (the blueprint changed since the row was
written, what the mapping no longer yields, another source's or a hand-made entity) still goes
through the write path, so the counts and errors are those the write path gives. SQLite and
PostgreSQL."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import SERVICE_BLUEPRINT
from tests.sources.catalog_fixtures import Worker, api, github_source, repo, settings

__all__ = ["api", "settings"]

COUNTS = ("created", "updated", "unchanged", "failed")
# The fixtures' mappings, as they are defined (another module's test edits the shared dict).
MAPPINGS: dict[str, Any] = {
    "identifier": ".name",
    "title": ".name",
    "blueprint": '"service"',
    "team": ".owner",
    "properties": {"repo": ".html_url", "language": ".language"},
    "relations": {"system": ".topics[0]"},
}


def _source(api: TestClient, **overrides: Any) -> Worker:
    body = github_source(**overrides)
    body["resources"][0]["port"]["entity"]["mappings"] = copy.deepcopy(MAPPINGS)
    assert api.post("/v1/data-sources", json=body).status_code == 201
    return Worker(api, body["identifier"])


def _counts(record: dict[str, Any]) -> tuple[int, ...]:
    return tuple(record["counts"][k] for k in COUNTS)


def test_a_hand_set_property_beside_the_source_s_keeps_the_entity_unchanged(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api")])
    patched = api.patch("/v1/blueprints/service/entities/api", json={"properties": {"tier": 2}})
    assert patched.status_code == 200, patched.text
    before = api.get("/v1/blueprints/service/entities/api").json()
    assert _counts(worker.sync("s2", [repo("api")])) == (0, 0, 1, 0)
    assert api.get("/v1/blueprints/service/entities/api").json() == before


def test_a_property_the_mapping_no_longer_yields_is_an_update(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api")])
    item = repo("api")
    item.pop("html_url")
    assert _counts(worker.sync("s2", [item])) == (0, 1, 0, 0)
    assert "repo" not in api.get("/v1/blueprints/service/entities/api").json()["properties"]


def test_another_source_s_entity_is_taken_over_through_the_write_path(api: TestClient) -> None:
    _source(api).sync("s1", [repo("api")])
    other = _source(api, identifier="gitlab_acme", kind="gitlab")
    assert _counts(other.sync("o1", [repo("api")])) == (0, 1, 0, 0)
    entity = api.get("/v1/blueprints/service/entities/api").json()
    assert entity["source"] == {"data_source": "gitlab_acme", "resource": 0}


def test_after_the_blueprint_changed_an_entity_it_refuses_now_fails_instead_of_unchanged(
    api: TestClient,
) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api"), repo("web", language="go")])
    schema = copy.deepcopy(SERVICE_BLUEPRINT["schema"])
    schema["properties"]["language"]["enum"] = ["go"]
    changed = api.patch("/v1/blueprints/service", json={"schema": schema})
    assert changed.status_code == 200, changed.text  # stored entities are not re-validated
    record = worker.sync("s2", [repo("api"), repo("web", language="go")])
    assert _counts(record) == (0, 0, 1, 1)
    (error,) = record["errors"]
    assert error["key"] == "api" and error["pointer"] == "/properties/language"
