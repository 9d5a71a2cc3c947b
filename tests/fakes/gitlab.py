"""Fake GitLab REST API v4: create a pipeline, get/list pipelines, pipeline variables, cancel."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.server import FakeVendor


class FakeGitLab(FakeVendor):
    token = "glpat-test"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.projects: dict[str, dict[str, Any]] = {"group/app": {"id": 42, "default_branch": "main"}}
        self.pipelines: dict[int, dict[str, Any]] = {}
        # Per next pipeline: (polls while running, final status).
        self.scripts: list[tuple[int, str]] = []
        self._ids = itertools.count(500)

    def _project(self, ref: str) -> dict[str, Any] | None:
        for path, project in self.projects.items():
            if ref in (path, str(project["id"])):
                return project
        return None

    def add_routes(self, app: FastAPI) -> None:
        def guard(request: Request, project: str) -> JSONResponse | dict[str, Any]:
            if request.headers.get("private-token") != self.token:
                return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
            found = self._project(project)
            return found if found else JSONResponse({"message": "404 Project Not Found"}, status_code=404)

        @app.post("/api/v4/projects/{project:path}/pipeline")
        async def create(project: str, request: Request) -> Any:
            found = guard(request, project)
            if isinstance(found, JSONResponse):
                return found
            body = await request.json()
            if body.get("ref") not in ("main", "develop"):
                return JSONResponse({"message": {"base": ["Reference not found"]}}, status_code=400)
            polls, final = self.scripts.pop(0) if self.scripts else (1, "success")
            pid = next(self._ids)
            self.pipelines[pid] = {
                "id": pid,
                "project_id": found["id"],
                "ref": body["ref"],
                "status": "created",
                "web_url": f"{str(request.base_url).rstrip('/')}/{project}/-/pipelines/{pid}",
                "updated_at": "2999-01-01T00:00:00Z",
                "_variables": body.get("variables") or [],
                "_polls": polls,
                "_final": final,
            }
            return JSONResponse(_public(self.pipelines[pid]), status_code=201)

        @app.get("/api/v4/projects/{project:path}/pipelines/{pid}/variables")
        async def variables(project: str, pid: int, request: Request) -> Any:
            found = guard(request, project)
            if isinstance(found, JSONResponse):
                return found
            return [{"variable_type": "env_var", **v} for v in self.pipelines[pid]["_variables"]]

        @app.post("/api/v4/projects/{project:path}/pipelines/{pid}/cancel")
        async def cancel(project: str, pid: int) -> Any:
            self.pipelines[pid]["status"] = "canceled"
            return _public(self.pipelines[pid])

        @app.get("/api/v4/projects/{project:path}/pipelines/{pid}")
        async def get(project: str, pid: int, request: Request) -> Any:
            found = guard(request, project)
            if isinstance(found, JSONResponse):
                return found
            pipeline = self.pipelines.get(pid)
            if pipeline is None:
                return JSONResponse({"message": "404 Not found"}, status_code=404)
            if pipeline["status"] in ("created", "pending", "running"):
                if pipeline["_polls"] > 0:
                    pipeline["_polls"] -= 1
                    pipeline["status"] = "running"
                else:
                    pipeline["status"] = pipeline["_final"]
            return _public(pipeline)

        @app.get("/api/v4/projects/{project:path}/pipelines")
        async def list_pipelines(project: str, request: Request) -> Any:
            found = guard(request, project)
            if isinstance(found, JSONResponse):
                return found
            ref = request.query_params.get("ref")
            return [
                _public(p)
                for p in sorted(self.pipelines.values(), key=lambda p: -p["id"])
                if p["project_id"] == found["id"] and (ref is None or p["ref"] == ref)
            ]

        @app.get("/api/v4/projects/{project:path}")
        async def get_project(project: str, request: Request) -> Any:
            found = guard(request, project)
            return found if isinstance(found, JSONResponse) else {"path_with_namespace": project, **found}


def _public(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pipeline.items() if not k.startswith("_")}
