"""Jira's REST API v2 as a data source: projects and issues (``startAt`` paging).

The issues are those of ``selector.jql`` (the resource's), else ``config.jql``, else every
issue the user can see, ordered by key so pages stay stable while the sync runs.
"""

from __future__ import annotations

from activities.sources.paging import PAGE_SIZE, Json, Page, VendorHttp, unknown_kind

API = "/rest/api/2"
DEFAULT_JQL = "order by key ASC"


class JiraSource:
    vendor = "jira"
    kinds = frozenset({"project", "issue"})

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        start = int(cursor or 0)
        params: Json = {"startAt": start, "maxResults": PAGE_SIZE}
        if kind == "project":
            body = await self.http.json(f"{API}/project/search", params)
            items = body.get("values") or []
            done = body.get("isLast", start + len(items) >= int(body.get("total", 0)))
        elif kind == "issue":
            jql = selector.get("jql") or config.get("jql") or DEFAULT_JQL
            body = await self.http.json(f"{API}/search", {**params, "jql": jql, "fields": "*navigable"})
            items = body.get("issues") or []
            done = start + len(items) >= int(body.get("total", 0))
        else:
            raise unknown_kind(self, kind)
        return Page(list(items), None if done or not items else str(start + len(items)))
