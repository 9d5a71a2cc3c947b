"""Fake Jira REST API v2 for data-source syncs: project search and JQL issue search, paged with
``startAt``/``maxResults`` (at most 50 per page, as Jira Cloud caps them)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.paged import PagedVendor

MAX_RESULTS = 50


class FakeJiraSearch(PagedVendor):
    user = "bot@example.com"
    token = "jira-sources-test"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.projects: list[dict[str, Any]] = []
        self.issues: list[dict[str, Any]] = []

    def add_project(self, key: str) -> None:
        self.projects.append({"id": str(10000 + len(self.projects)), "key": key, "name": f"Project {key}"})

    def add_issue(self, project: str, number: int, status: str = "To Do") -> None:
        self.issues.append(
            {
                "id": str(20000 + len(self.issues)),
                "key": f"{project}-{number}",
                "fields": {
                    "summary": f"Issue {number}",
                    "status": {"name": status},
                    "project": {"key": project},
                    "assignee": {"emailAddress": "alice@example.com"},
                },
            }
        )

    def add_routes(self, app: FastAPI) -> None:
        def authorised(request: Request) -> bool:
            expected = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
            return request.headers.get("authorization") == f"Basic {expected}"

        def window(request: Request) -> tuple[int, int]:
            start = int(request.query_params.get("startAt", "0"))
            return start, min(int(request.query_params.get("maxResults", "50")), MAX_RESULTS)

        @app.get("/rest/api/2/project/search")
        async def projects(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"errorMessages": ["unauthorised"]}, status_code=401)
            start, size = window(request)
            scripted = await self.intercept("projects", start // MAX_RESULTS + 1)
            if scripted is not None:
                return scripted
            chunk = self.projects[start : start + size]
            last = start + size >= len(self.projects)
            body = {
                "startAt": start,
                "maxResults": size,
                "total": len(self.projects),
                "isLast": last,
                "values": chunk,
            }
            return JSONResponse(body)

        @app.get("/rest/api/2/search")
        async def search(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"errorMessages": ["unauthorised"]}, status_code=401)
            start, size = window(request)
            scripted = await self.intercept("issues", start // MAX_RESULTS + 1)
            if scripted is not None:
                return scripted
            jql = request.query_params.get("jql", "")
            found = [i for i in self.issues if _matches(i, jql)]
            body = {
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": found[start : start + size],
            }
            return JSONResponse(body)


def _matches(issue: dict[str, Any], jql: str) -> bool:
    """The fake's JQL: ``project = KEY`` narrows; anything else (an ``order by``) matches all."""
    head = jql.lower().split(" order by")[0].strip()
    if head.startswith("project ="):
        return bool(issue["fields"]["project"]["key"].lower() == head.split("=", 1)[1].strip().lower())
    return True
