"""GitHub's REST API as a data source: repositories, pull requests, workflow runs, teams.

Items are GitHub's own JSON, one per object, so Port Ocean's GitHub mappings work unchanged.
Pages follow the ``Link: <...>; rel="next"`` header; the pull requests and workflow runs are
listed repository by repository (``config.org``'s repositories, sorted by full name).
"""

from __future__ import annotations

from typing import Any

from activities.sources.paging import PAGE_SIZE, Json, Page, VendorHttp, nested, required, unknown_kind
from activities.urls import path, segment

# The listing of each kind: (path under the org or a repository, the key of the list, params).
_ORG_LISTS = {
    "repository": ("repos", None, {"type": "all", "sort": "full_name"}),
    "team": ("teams", None, {}),
}
_REPO_LISTS = {
    "pull-request": ("pulls", None, {"state": "all"}),
    "workflow-run": ("actions/runs", "workflow_runs", {}),
}


class GitHubSource:
    vendor = "github"
    kinds = frozenset(_ORG_LISTS) | frozenset(_REPO_LISTS)

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        org = required(config, "org", self.vendor)
        if kind in _ORG_LISTS:
            where, key, params = _ORG_LISTS[kind]
            return await self.linked(cursor or f"{path('orgs', org)}/{where}", key, params)
        if kind in _REPO_LISTS:
            where, key, params = _REPO_LISTS[kind]
            if "repositories" not in memo:
                memo["repositories"] = await self.repositories(org)
            repositories: list[str] = memo["repositories"]

            async def of_repository(name: str, page_cursor: str) -> Page:
                owner, repo = name.split("/", 1)
                url = page_cursor or f"/repos/{segment(owner)}/{segment(repo)}/{where}"
                return await self.linked(url, key, params)

            return await nested(repositories, cursor, of_repository)
        raise unknown_kind(self, kind)

    async def linked(self, url: str, key: str | None, params: Json) -> Page:
        """One page of a listing; ``url`` is the first page's path or a ``Link`` next URL (which
        carries its own query)."""
        first = url.startswith("/")
        response = await self.http.get(
            self.http.same_origin(url), {**params, "per_page": PAGE_SIZE} if first else None
        )
        body: Any = response.json()
        items = body.get(key) or [] if key else body
        next_url = response.links.get("next", {}).get("url")
        return Page(list(items), self.http.same_origin(next_url) if next_url else None)

    async def repositories(self, org: str) -> list[str]:
        """Every repository's ``owner/name`` in the org."""
        names: list[str] = []
        cursor = ""
        while True:
            page = await self.linked(cursor or f"{path('orgs', org)}/repos", None, {"type": "all"})
            names += [repo["full_name"] for repo in page.items]
            if not page.next:
                return names
            cursor = page.next
