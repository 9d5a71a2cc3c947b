"""Fake GitLab REST API v4 for data-source syncs: a group's projects, merge requests and each
project's pipelines, paged with ``per_page``/``page`` and the ``X-Next-Page`` header."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.paged import PagedVendor, window


class FakeGitLabGroups(PagedVendor):
    token = "glpat-sources-test"
    group = "platform"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.projects: list[dict[str, Any]] = []
        self.merge_requests: list[dict[str, Any]] = []
        self.pipelines: dict[int, list[dict[str, Any]]] = {}

    def add_project(self, name: str) -> dict[str, Any]:
        project_id = 100 + len(self.projects)
        project = {
            "id": project_id,
            "name": name,
            "path": name,
            "path_with_namespace": f"{self.group}/{name}",
            "web_url": f"https://gitlab.example/{self.group}/{name}",
            "default_branch": "main",
            "topics": [],
            "namespace": {"full_path": self.group},
        }
        self.projects.append(project)
        return project

    def add_merge_request(self, project: dict[str, Any], iid: int) -> None:
        self.merge_requests.append(
            {
                "id": 9000 + len(self.merge_requests),
                "iid": iid,
                "project_id": project["id"],
                "title": f"MR {iid}",
                "state": "opened",
                "author": {"username": "bob"},
                "web_url": f"{project['web_url']}/-/merge_requests/{iid}",
            }
        )

    def add_pipeline(self, project: dict[str, Any], pipeline_id: int, status: str = "success") -> None:
        self.pipelines.setdefault(project["id"], []).append(
            {
                "id": pipeline_id,
                "project_id": project["id"],
                "ref": "main",
                "status": status,
                "web_url": f"{project['web_url']}/-/pipelines/{pipeline_id}",
            }
        )

    def add_routes(self, app: FastAPI) -> None:
        async def paged(request: Request, listing: str, items: list[Any]) -> Response:
            if request.headers.get("private-token") != self.token:
                return JSONResponse({"message": "401 Unauthorized"}, status_code=401)
            page = int(request.query_params.get("page", "1"))
            size = min(int(request.query_params.get("per_page", "20")), 100)
            scripted = await self.intercept(listing, page)
            if scripted is not None:
                return scripted
            chunk, more = window(items, page, size)
            return JSONResponse(
                chunk, headers={"X-Next-Page": str(page + 1) if more else "", "X-Page": str(page)}
            )

        @app.get("/api/v4/groups/{group}/projects")
        async def projects(group: str, request: Request) -> Response:
            return await paged(request, "projects", self.projects if group == self.group else [])

        @app.get("/api/v4/groups/{group}/merge_requests")
        async def merge_requests(group: str, request: Request) -> Response:
            return await paged(request, "merge_requests", self.merge_requests if group == self.group else [])

        @app.get("/api/v4/projects/{project_id}/pipelines")
        async def pipelines(project_id: int, request: Request) -> Response:
            return await paged(request, f"pipelines:{project_id}", self.pipelines.get(project_id, []))
