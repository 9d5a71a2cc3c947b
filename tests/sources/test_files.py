"""Kind ``files``: catalog files the worker found in repositories arrive as
``{repository, path, url, document}`` and are mapped by the descriptor converter (no jq), into
the built-in blueprints; errors name the document's field."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from catalog.sources.descriptors import builtin_blueprints
from tests.sources.catalog_fixtures import Worker, api, settings

__all__ = ["api", "settings"]

FILES: dict[str, Any] = {
    "identifier": "catalog_files",
    "kind": "files",
    "config": {"org": "acme"},
    "create_missing_related_entities": True,
    "resources": [{"kind": "file", "selector": {"query": '.path | endswith("catalog-info.yaml")'}}],
}


def _file(name: str, document: Any) -> dict[str, Any]:
    return {
        "repository": f"acme/{name}",
        "path": "catalog-info.yaml",
        "url": f"https://github.com/acme/{name}/blob/main/catalog-info.yaml",
        "document": document,
    }


def _component(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {"type": "service", "lifecycle": "production", "owner": "payments-team", "system": "retail"},
    }


def test_catalog_files_become_entities_of_the_builtin_blueprints(api: TestClient) -> None:
    for blueprint in builtin_blueprints():
        url = f"/v1/blueprints/{blueprint['identifier']}"
        exists = api.get(url).status_code == 200
        saved = api.put(url, json=blueprint) if exists else api.post("/v1/blueprints", json=blueprint)
        assert saved.status_code in (200, 201), saved.text
    assert api.post("/v1/data-sources", json=FILES).status_code == 201
    worker = Worker(api, "catalog_files")
    worker.open("s1")
    broken = _file("broken", {"apiVersion": "backstage.io/v1alpha1", "kind": "Component", "metadata": {}})
    answer = worker.page(
        "s1", [_file("shop", _component("shop")), broken, {**_file("x", {}), "path": "README.md"}]
    )
    assert answer == {"seen": 2, "created": 1, "updated": 0, "unchanged": 0, "failed": 1}
    shop = api.get("/v1/blueprints/component/entities/shop").json()
    assert shop["team"] == ["payments-team"] and shop["relations"]["system"] == "retail"
    assert shop["source"] == {"data_source": "catalog_files", "resource": 0}
    (error,) = worker.complete("s1")["errors"]
    assert error["key"] == 1 and error["pointer"].startswith("/metadata")


def test_only_admins_define_sources_without_literal_blueprints(api: TestClient) -> None:
    user = {"identifier": "mo", "email": "mo@example.com", "teams": ["payments-team"]}
    assert api.post("/v1/users", json=user).status_code == 201
    token = api.post("/v1/tokens", json={"user": "mo"}).json()["token"]
    refused = api.post("/v1/data-sources", json=FILES, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403


def test_a_file_the_worker_could_not_read_is_recorded_with_its_own_error(api: TestClient) -> None:
    """The worker sends ``document: null`` and why (not YAML, too big, not UTF-8): the sync
    records that reason keyed by repository and path, and the other files still land."""
    for blueprint in builtin_blueprints():
        url = f"/v1/blueprints/{blueprint['identifier']}"
        if api.get(url).status_code == 404:
            assert api.post("/v1/blueprints", json=blueprint).status_code == 201
    assert api.post("/v1/data-sources", json=FILES).status_code == 201
    worker = Worker(api, "catalog_files")
    worker.open("s1")
    unreadable = {
        **_file("broken", None),
        "error": "catalog-info.yaml is not valid YAML: while parsing a flow sequence",
    }
    oversized = {**_file("huge", None), "error": "catalog-info.yaml is over 1048576 bytes"}
    answer = worker.page("s1", [unreadable, _file("shop", _component("shop")), oversized])
    assert answer == {"seen": 3, "created": 1, "updated": 0, "unchanged": 0, "failed": 2}
    errors = worker.complete("s1")["errors"]
    assert errors == [
        {
            "resource": 0,
            "key": "acme/broken/catalog-info.yaml",
            "pointer": "/document",
            "message": "catalog-info.yaml is not valid YAML: while parsing a flow sequence",
        },
        {
            "resource": 0,
            "key": "acme/huge/catalog-info.yaml",
            "pointer": "/document",
            "message": "catalog-info.yaml is over 1048576 bytes",
        },
    ]
    assert api.get("/v1/blueprints/component/entities/shop").status_code == 200
