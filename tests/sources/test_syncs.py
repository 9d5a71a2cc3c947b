"""Syncs through HTTP with the service token: counts, pages applied once, stale deletion and its
threshold, partial syncs delete nothing, hand-made and other sources' entities untouched, and
source-owned properties and relations."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.sources.catalog_fixtures import Worker, api, github_source, repo, settings

__all__ = ["api", "settings"]


def _identifiers(api: TestClient) -> list[str]:
    return sorted(e["identifier"] for e in api.get("/v1/blueprints/service/entities").json()["items"])


def _entity_audit(api: TestClient) -> int:
    return len(api.get("/v1/audit-log", params={"resource_type": "entity", "limit": 1000}).json()["items"])


def _source(api: TestClient, **overrides: Any) -> Worker:
    body = github_source(**overrides)
    assert api.post("/v1/data-sources", json=body).status_code == 201
    return Worker(api, body["identifier"])


def test_a_page_is_mapped_written_as_the_source_and_counted(api: TestClient) -> None:
    worker = _source(api)
    worker.open("s1")
    answer = worker.page(
        "s1", [repo("api"), repo("web"), repo("legacy", language="cobol"), repo("x", archived=True)]
    )
    assert answer == {"seen": 3, "created": 2, "updated": 0, "unchanged": 0, "failed": 1}
    entity = api.get("/v1/blueprints/service/entities/api").json()
    assert entity["source"] == {"data_source": "github_acme", "resource": 0}
    assert entity["team"] == ["payments-team"] and entity["relations"] == {"system": "billing"}
    assert entity["created_by"] == "datasource:github_acme"
    record = worker.complete("s1")
    assert record["status"] == "SUCCESS" and record["ended_at"]
    assert record["counts"] == {
        "seen": 3,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 1,
    }
    (error,) = record["errors"]
    assert error["key"] == "legacy" and error["pointer"] == "/properties/language"
    listed = api.get("/v1/data-sources/github_acme/syncs").json()
    assert [s["id"] for s in listed["items"]] == ["s1"]


def test_a_page_sent_again_answers_the_same_and_counts_nothing_twice(api: TestClient) -> None:
    worker = _source(api)
    worker.open("s1")
    first = worker.page("s1", [repo("api"), repo("web")], page="cursor-2")
    again = worker.page("s1", [repo("api"), repo("web")], page="cursor-2")
    assert again == first == {"seen": 2, "created": 2, "updated": 0, "unchanged": 0, "failed": 0}
    assert worker.open("s1")["counts"]["created"] == 2  # opening again answers the same record
    record = worker.complete("s1")
    assert record["counts"]["seen"] == 2
    assert worker.complete("s1") == record  # idempotent


def test_a_sync_that_changes_nothing_writes_nothing(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api"), repo("web")])
    written = _entity_audit(api)
    before = api.get("/v1/blueprints/service/entities/api").json()
    record = worker.sync("s2", [repo("api"), repo("web")])
    assert record["counts"] == {
        "seen": 2,
        "created": 0,
        "updated": 0,
        "unchanged": 2,
        "deleted": 0,
        "failed": 0,
    }
    assert _entity_audit(api) == written
    assert api.get("/v1/blueprints/service/entities/api").json()["updated_at"] == before["updated_at"]
    changed = worker.sync("s3", [repo("api", language="go"), repo("web")])
    assert changed["counts"]["updated"] == 1 and changed["counts"]["unchanged"] == 1


def test_stale_entities_of_the_source_are_deleted_and_nothing_else(api: TestClient) -> None:
    worker = _source(api, deletion_threshold=0.5)
    other = _source(api, identifier="gitlab_acme", kind="gitlab")
    worker.sync("s1", [repo("api"), repo("web"), repo("db"), repo("old")])
    other.sync("o1", [repo("theirs")])
    hand_made = {"identifier": "handmade", "team": ["payments-team"], "properties": {"language": "go"}}
    assert api.post("/v1/blueprints/service/entities", json=hand_made).status_code == 201
    record = worker.sync("s2", [repo("api"), repo("web"), repo("db")])
    assert record["counts"]["deleted"] == 1 and record["warnings"] == []
    assert _identifiers(api) == ["api", "db", "handmade", "theirs", "web"]
    # the system the first sync created as a missing related entity is no source's: it stays
    assert api.get("/v1/blueprints/system/entities/billing").status_code == 200


def test_more_stale_than_the_threshold_deletes_none_with_a_warning(api: TestClient) -> None:
    worker = _source(api, deletion_threshold=0.5)
    worker.sync("s1", [repo("a"), repo("b"), repo("c"), repo("d")])
    record = worker.sync("s2", [repo("a")])  # 3 of 4 unseen: above 0.5
    assert record["status"] == "SUCCESS" and record["counts"]["deleted"] == 0
    (warning,) = record["warnings"]
    assert "deletion_threshold 0.5" in warning
    assert _identifiers(api) == ["a", "b", "c", "d"]


def test_partial_and_failed_syncs_delete_nothing(api: TestClient) -> None:
    worker = _source(api, deletion_threshold=1)
    worker.sync("s1", [repo("a"), repo("b")])
    for sync_id, status in (("s2", "PARTIAL"), ("s3", "FAILURE")):
        record = worker.sync(sync_id, [repo("a")], status=status)
        assert record["status"] == status and record["counts"]["deleted"] == 0
    assert _identifiers(api) == ["a", "b"]
    assert worker.sync("s4", [repo("a")])["counts"]["deleted"] == 1
    assert _identifiers(api) == ["a"]


def test_without_delete_stale_nothing_is_deleted(api: TestClient) -> None:
    worker = _source(api, delete_stale=False)
    worker.sync("s1", [repo("a"), repo("b")])
    assert worker.sync("s2", [repo("a")])["counts"]["deleted"] == 0
    assert _identifiers(api) == ["a", "b"]


def test_items_after_the_end_are_refused(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("a")])
    url = "/v1/data-sources/github_acme/syncs/s1/items"
    late = api.post(
        url,
        json={"resource": 0, "page": "next", "items": [repo("b")]},
        headers={"Authorization": "Bearer service-test-token"},
    )
    assert late.status_code == 409


def test_source_owned_properties_answer_403_naming_the_source(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api")])
    url = "/v1/blueprints/service/entities/api"
    refused = api.patch(url, json={"properties": {"language": "go"}})  # the admin, too
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert "github_acme" in error["message"]
    assert error["details"][0]["pointer"] == "/properties/language"
    # a property the source does not set is the people's
    assert api.patch(url, json={"properties": {"tier": 2}}).status_code == 200
    # the blueprint may allow a property explicitly
    policy = {"update_properties": {"language": {"roles": ["admin"]}}}
    assert api.patch("/v1/blueprints/service", json={"permissions": policy}).status_code == 200
    assert api.patch(url, json={"properties": {"language": "go"}}).status_code == 200
    # the next sync sets it back, and keeps what people set beside it
    worker.sync("s2", [repo("api")])
    assert api.get(url).json()["properties"] == {
        "repo": "https://github.com/acme/api",
        "language": "python",
        "tier": 2,
    }


def test_source_owned_relations_answer_403_naming_the_source(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api"), repo("web")])
    assert api.post("/v1/blueprints/system/entities", json={"identifier": "retail"}).status_code == 201
    url = "/v1/blueprints/service/entities/api"
    refused = api.patch(url, json={"relations": {"system": "retail"}})  # the admin, too
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert "github_acme" in error["message"] and "relations" in error["message"]
    assert [d["pointer"] for d in error["details"]] == ["/relations/system"]
    assert "update_relations" in error["details"][0]["message"]
    # A property and a relation at once: both named, nothing changed.
    both = api.patch(url, json={"properties": {"language": "go"}, "relations": {"system": "retail"}})
    assert [d["pointer"] for d in both.json()["error"]["details"]] == [
        "/properties/language",
        "/relations/system",
    ]
    # The same through a bulk upsert: that item is refused, by pointer.
    bulk = api.post(
        "/v1/blueprints/service/entities/bulk",
        params={"merge": "true"},
        json={"entities": [{"identifier": "web", "relations": {"system": "retail"}}]},
    )
    (result,) = bulk.json()["results"]
    assert result["http_status"] == 403 and "/entities/0/relations/system" in bulk.text, bulk.text
    assert api.get("/v1/blueprints/service/entities/web").json()["relations"]["system"] == "billing"
    assert api.get(url).json()["relations"]["system"] == "billing"
    # A relation the source does not set is the people's.
    assert api.patch(url, json={"relations": {"depends_on": ["web"]}}).status_code == 200
    # The blueprint may allow the relation explicitly.
    policy = {"update_relations": {"system": {"roles": ["admin"]}}}
    assert api.patch("/v1/blueprints/service", json={"permissions": policy}).status_code == 200
    assert api.patch(url, json={"relations": {"system": "retail"}}).status_code == 200
    # The next sync sets it back and keeps the relation people set beside it.
    worker.sync("s2", [repo("api"), repo("web")])
    assert api.get(url).json()["relations"] == {"system": "billing", "depends_on": ["web"]}


def test_a_property_the_mapping_stops_setting_is_removed(api: TestClient) -> None:
    worker = _source(api)
    worker.sync("s1", [repo("api")])
    worker.sync("s2", [{**repo("api"), "html_url": None}])
    assert api.get("/v1/blueprints/service/entities/api").json()["properties"] == {"language": "python"}


def test_search_relations_resolve_in_the_catalog(api: TestClient) -> None:
    for name in ("db", "cache", "queue"):
        body = {"identifier": name, "team": ["payments-team"], "properties": {"language": "go"}}
        assert api.post("/v1/blueprints/service/entities", json=body).status_code == 201
    search = {
        "combinator": '"and"',
        "rules": [{"property": '"$identifier"', "operator": '"in"', "value": ".deps"}],
    }
    source = github_source()
    mappings = source["resources"][0]["port"]["entity"]["mappings"]
    mappings["relations"] = {"depends_on": search}
    assert api.post("/v1/data-sources", json=source).status_code == 201
    worker = Worker(api, "github_acme")
    worker.sync("s1", [repo("api", deps=["db", "queue"])])
    assert api.get("/v1/blueprints/service/entities/api").json()["relations"] == {
        "depends_on": ["db", "queue"]
    }


def test_unknown_sync_and_resource(api: TestClient) -> None:
    worker = _source(api)
    headers = {"Authorization": "Bearer service-test-token"}
    missing = api.post(
        "/v1/data-sources/github_acme/syncs/nope/items", json={"resource": 0, "items": []}, headers=headers
    )
    assert missing.status_code == 404
    worker.open("s1")
    bad = api.post(
        "/v1/data-sources/github_acme/syncs/s1/items", json={"resource": 5, "items": []}, headers=headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["pointer"] == "/resource"
