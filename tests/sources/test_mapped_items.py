"""A sync remembers what each raw item mapped to, under a hash of the item and of its resource's
definition, and a re-sync maps again only what changed: the counts, entities and errors are
those a fresh mapping gives; a changed item or mapping is mapped afresh; failed items and
resources that read the clock are never remembered; a successful full sync forgets what it did
not use, a partial one nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.sources.catalog_fixtures import MAPPINGS, Worker, api, github_source, repo, settings

__all__ = ["api", "settings"]

COUNTS = ("seen", "created", "updated", "unchanged", "deleted", "failed")


def _source(api: TestClient, **mappings: Any) -> tuple[Worker, dict[str, Any]]:
    body = github_source()
    body["resources"][0]["port"]["entity"]["mappings"] = {**copy.deepcopy(MAPPINGS), **mappings}
    assert api.post("/v1/data-sources", json=body).status_code == 201
    return Worker(api, body["identifier"]), body


def _counts(record: dict[str, Any]) -> dict[str, int]:
    return {k: record["counts"][k] for k in COUNTS if record["counts"][k]}


def _remembered(api: TestClient) -> list[tuple[Any, str]]:
    """(entities, last sync) of each remembered item of the source, sorted."""
    factory: sessionmaker[Session] = api.app.state.sessionmaker  # type: ignore[attr-defined]
    with factory() as session:
        rows = session.execute(
            text("SELECT entities, sync_id FROM data_source_mapped_items WHERE data_source = 'github_acme'")
        ).all()
    found = [(_decoded(entities), sync_id) for entities, sync_id in rows]
    return sorted(found, key=repr)


def _decoded(entities: Any) -> Any:
    return json.loads(entities) if isinstance(entities, str) else entities


def _identifiers(remembered: list[tuple[Any, str]]) -> list[str | None]:
    return sorted((entities[0][1]["identifier"] if entities else None for entities, _ in remembered), key=str)


def test_a_re_sync_reuses_each_item_s_mapping_and_maps_a_changed_item_again(api: TestClient) -> None:
    worker, _ = _source(api)
    items = [repo("api"), repo("web"), repo("old", archived=True)]
    assert _counts(worker.sync("s1", items)) == {"seen": 2, "created": 2}
    remembered = _remembered(api)
    # the archived repository is remembered as one the selector drops
    assert _identifiers(remembered) == [None, "api", "web"]
    assert {sync for _, sync in remembered} == {"s1"}

    assert _counts(worker.sync("s2", items)) == {"seen": 2, "unchanged": 2}
    assert {sync for _, sync in _remembered(api)} == {"s2"}

    changed = [repo("api"), repo("web", language="go"), repo("old", archived=True)]
    assert _counts(worker.sync("s3", changed)) == {"seen": 2, "updated": 1, "unchanged": 1}
    assert api.get("/v1/blueprints/service/entities/web").json()["properties"]["language"] == "go"
    # web's earlier outcome was not used by s3, a successful full sync: forgotten
    remembered = _remembered(api)
    assert len(remembered) == 3 and {sync for _, sync in remembered} == {"s3"}
    web = next(entities for entities, _ in remembered if entities and entities[0][1]["identifier"] == "web")
    assert web[0][1]["properties"]["language"] == "go"


def test_a_changed_mapping_maps_every_item_again(api: TestClient) -> None:
    worker, body = _source(api)
    items = [repo("api"), repo("web")]
    worker.sync("s1", items)
    body["resources"][0]["port"]["entity"]["mappings"]["title"] = ".name | ascii_upcase"
    assert api.put("/v1/data-sources/github_acme", json=body).status_code == 200
    assert _counts(worker.sync("s2", items)) == {"seen": 2, "updated": 2}
    assert api.get("/v1/blueprints/service/entities/api").json()["title"] == "API"
    assert _counts(worker.sync("s3", items)) == {"seen": 2, "unchanged": 2}
    assert len(_remembered(api)) == 2  # the first definition's outcomes are forgotten


def test_an_item_whose_mapping_failed_reports_its_error_at_every_sync(api: TestClient) -> None:
    worker, _ = _source(api)
    items = [repo("api"), {**repo("web"), "language": 7}]
    first, again = worker.sync("s1", items), worker.sync("s2", items)
    assert first["counts"]["failed"] == again["counts"]["failed"] == 1
    assert first["errors"] == again["errors"] and first["errors"]
    assert {(e["key"], e["pointer"]) for e in again["errors"]} == {("web", "/properties/language")}
    assert _identifiers(_remembered(api)) == ["api", "web"]  # the write path refused web, not jq
    broken = {"name": None, "archived": False}
    for sync in ("s3", "s4"):
        record = worker.sync(sync, [repo("api"), broken])
        (error,) = record["errors"]
        assert error["pointer"] == "/resources/0/port/entity/mappings/identifier", error
    assert _identifiers(_remembered(api)) == ["api"]  # an item jq failed on is never remembered


def test_a_resource_that_reads_the_clock_is_mapped_afresh_every_time(api: TestClient) -> None:
    worker, _ = _source(api, title='if now > 0 then .name else "never" end')
    assert _counts(worker.sync("s1", [repo("api")])) == {"seen": 1, "created": 1}
    assert _counts(worker.sync("s2", [repo("api")])) == {"seen": 1, "unchanged": 1}
    assert _remembered(api) == []


def test_a_hand_deleted_entity_comes_back_and_a_partial_sync_forgets_nothing(api: TestClient) -> None:
    worker, _ = _source(api)
    worker.sync("s1", [repo("api"), repo("web")])
    assert api.delete("/v1/blueprints/service/entities/api").status_code == 204
    assert _counts(worker.sync("s2", [repo("api"), repo("web")])) == {"seen": 2, "created": 1, "unchanged": 1}
    assert api.get("/v1/blueprints/service/entities/api").status_code == 200
    worker.sync("s3", [repo("api")], status="PARTIAL")
    assert len(_remembered(api)) == 2
    assert _counts(worker.sync("s4", [repo("api")])) == {"seen": 1, "unchanged": 1, "deleted": 1}
    assert _identifiers(_remembered(api)) == ["api"]


def test_items_to_parse_outcomes_are_reused_whole(api: TestClient) -> None:
    body = github_source()
    body["resources"][0]["port"]["itemsToParse"] = ".packages"
    body["resources"][0]["port"]["entity"]["mappings"] = {
        "identifier": ".item.name",
        "blueprint": '"service"',
        "properties": {"language": ".language"},
    }
    assert api.post("/v1/data-sources", json=body).status_code == 201
    worker = Worker(api, "github_acme")
    mono = repo("mono", packages=[{"name": "pkg-a"}, {"name": "pkg-b"}])
    assert _counts(worker.sync("s1", [mono])) == {"seen": 1, "created": 2}
    assert _counts(worker.sync("s2", [mono])) == {"seen": 1, "unchanged": 2}
    ((entities, _),) = _remembered(api)
    assert [e[1]["identifier"] for e in entities] == ["pkg-a", "pkg-b"]
