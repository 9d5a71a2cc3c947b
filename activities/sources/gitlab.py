"""GitLab's REST API v4 as a data source: projects, merge requests, pipelines.

``config.group`` (a group's id or full path) limits the listing to that group and its
subgroups; without it, the projects the token's user is a member of. Pages follow the
``X-Next-Page`` header; pipelines are listed project by project.
"""

from __future__ import annotations

from activities.sources.paging import PAGE_SIZE, Json, Page, VendorHttp, nested, unknown_kind
from activities.urls import path

API = "/api/v4"


class GitLabSource:
    vendor = "gitlab"
    kinds = frozenset({"project", "merge-request", "pipeline"})

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        group = config.get("group")
        scope = f"{API}{path('groups', group)}" if group else API
        if kind == "project":
            params = {"include_subgroups": "true"} if group else {"membership": "true"}
            return await self.numbered(f"{scope}/projects", params, cursor)
        if kind == "merge-request":
            return await self.numbered(f"{scope}/merge_requests", {"scope": "all", "state": "all"}, cursor)
        if kind == "pipeline":
            if "projects" not in memo:
                memo["projects"] = await self.projects(scope, group)
            projects: list[str] = memo["projects"]

            async def of_project(project: str, page_cursor: str) -> Page:
                return await self.numbered(f"{API}{path('projects', project)}/pipelines", {}, page_cursor)

            return await nested(projects, cursor, of_project)
        raise unknown_kind(self, kind)

    async def numbered(self, url: str, params: Json, cursor: str) -> Page:
        response = await self.http.get(url, {**params, "per_page": PAGE_SIZE, "page": cursor or "1"})
        following = response.headers.get("x-next-page", "").strip()
        return Page(list(response.json()), following or None)

    async def projects(self, scope: str, group: object) -> list[str]:
        """Every project's id (as text) in the group, or the user's."""
        params = {"include_subgroups": "true"} if group else {"membership": "true"}
        ids: list[str] = []
        cursor = ""
        while True:
            page = await self.numbered(f"{scope}/projects", {**params, "simple": "true"}, cursor)
            ids += [str(project["id"]) for project in page.items]
            if not page.next:
                return ids
            cursor = page.next
