"""PagerDuty's REST API v2 as a data source: services, incidents, on-calls.

Pages are ``offset``/``limit`` with PagerDuty's ``more`` flag; the token travels as
``Authorization: Token token=...``. ``config.incident_statuses`` narrows the incidents
(default: triggered and acknowledged).
"""

from __future__ import annotations

from activities.sources.paging import PAGE_SIZE, Json, Page, VendorHttp, unknown_kind

_LISTS = {"service": "services", "incident": "incidents", "oncall": "oncalls"}
OPEN_INCIDENTS = ["triggered", "acknowledged"]


class PagerDutySource:
    vendor = "pagerduty"
    kinds = frozenset(_LISTS)

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page:
        if kind not in _LISTS:
            raise unknown_kind(self, kind)
        key = _LISTS[kind]
        offset = int(cursor or 0)
        params: Json = {"offset": offset, "limit": PAGE_SIZE}
        if kind == "incident":
            params["statuses[]"] = config.get("incident_statuses") or OPEN_INCIDENTS
        body = await self.http.json(f"/{key}", params)
        items = list(body.get(key) or [])
        more = bool(body.get("more")) and bool(items)
        return Page(items, str(offset + len(items)) if more else None)
