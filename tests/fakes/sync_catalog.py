"""Fake catalog side of a data-source sync: the four service routes the worker calls.

It keeps the interface's promises a worker relies on: ``PUT .../syncs/{id}`` opens a record
once, a page already applied answers its stored counts and counts nothing twice, and
``complete`` ends the record. ``items(source, sync)`` is every item applied, in order, once.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.server import FakeVendor


class FakeSyncCatalog(FakeVendor):
    token = "service-sources-test"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.sources: dict[str, dict[str, Any]] = {}
        self.syncs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pages: dict[tuple[str, str], dict[tuple[int, str], dict[str, Any]]] = {}
        self.applied: dict[tuple[str, str], list[tuple[int, str, list[Any]]]] = {}

    def add_source(self, identifier: str, kind: str, config: dict[str, Any], *resource_kinds: str) -> None:
        resources = [{"kind": k, "selector": {"query": "true"}, "port": {}} for k in resource_kinds]
        self.sources[identifier] = {
            "identifier": identifier,
            "kind": kind,
            "config": config,
            "resources": resources,
        }

    def items(self, source: str, sync: str, resource: int | None = None) -> list[Any]:
        return [
            item
            for index, _, items in self.applied.get((source, sync), [])
            if resource is None or index == resource
            for item in items
        ]

    def add_routes(self, app: FastAPI) -> None:
        def denied(request: Request) -> Response | None:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"error": {"code": "unauthorized", "message": "no"}}, status_code=401)
            return None

        @app.get("/v1/data-sources/{source}")
        async def definition(source: str, request: Request) -> Any:
            if source not in self.sources:
                return JSONResponse({"error": {"code": "not_found", "message": source}}, status_code=404)
            return denied(request) or self.sources[source]

        @app.put("/v1/data-sources/{source}/syncs/{sync}")
        async def open_sync(source: str, sync: str, request: Request) -> Any:
            if no := denied(request):
                return no
            body = await request.json()
            record = self.syncs.setdefault(
                (source, sync), {"id": sync, "status": "RUNNING", "trigger": body["trigger"], "counts": {}}
            )
            return record

        @app.post("/v1/data-sources/{source}/syncs/{sync}/items")
        async def items(source: str, sync: str, request: Request) -> Any:
            if no := denied(request):
                return no
            body = await request.json()
            pages = self.pages.setdefault((source, sync), {})
            key = (int(body["resource"]), str(body["page"]))
            if key in pages:
                return pages[key]
            answer = {
                "seen": len(body["items"]),
                "created": len(body["items"]),
                "updated": 0,
                "unchanged": 0,
                "failed": 0,
            }
            pages[key] = answer
            self.applied.setdefault((source, sync), []).append((key[0], key[1], body["items"]))
            counts = self.syncs[source, sync]["counts"]
            for name, value in answer.items():
                counts[name] = counts.get(name, 0) + value
            return answer

        @app.post("/v1/data-sources/{source}/syncs/{sync}/complete")
        async def complete(source: str, sync: str, request: Request) -> Any:
            if no := denied(request):
                return no
            body = await request.json()
            record = self.syncs[source, sync]
            record.update(status=body["status"], errors=body["errors"])
            return record
