"""Fake PagerDuty REST API v2: services, incidents and on-calls, paged with ``offset``/``limit``
and ``more``; the token as ``Authorization: Token token=...``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.paged import PagedVendor


class FakePagerDuty(PagedVendor):
    token = "pd-sources-test"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.lists: dict[str, list[dict[str, Any]]] = {"services": [], "incidents": [], "oncalls": []}

    def add_service(self, name: str) -> dict[str, Any]:
        service_id = f"PSVC{len(self.lists['services']):03d}"
        service = {
            "id": service_id,
            "type": "service",
            "name": name,
            "status": "active",
            "html_url": f"https://acme.pagerduty.example/service-directory/{service_id}",
            "escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference"},
        }
        self.lists["services"].append(service)
        return service

    def add_incident(self, service: dict[str, Any], status: str = "triggered") -> None:
        number = len(self.lists["incidents"]) + 1
        self.lists["incidents"].append(
            {
                "id": f"PINC{number:03d}",
                "type": "incident",
                "incident_number": number,
                "title": f"Incident {number}",
                "status": status,
                "urgency": "high",
                "service": {"id": service["id"], "type": "service_reference", "summary": service["name"]},
            }
        )

    def add_oncall(self, user: str, level: int = 1) -> None:
        self.lists["oncalls"].append(
            {
                "user": {"id": f"PU{user}", "summary": user, "type": "user_reference"},
                "escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference"},
                "escalation_level": level,
                "start": "2026-01-01T00:00:00Z",
                "end": None,
            }
        )

    def add_routes(self, app: FastAPI) -> None:
        async def listed(request: Request, key: str) -> Response:
            if request.headers.get("authorization") != f"Token token={self.token}":
                return JSONResponse({"error": {"message": "Unauthorized", "code": 2006}}, status_code=401)
            offset = int(request.query_params.get("offset", "0"))
            limit = min(int(request.query_params.get("limit", "25")), 100)
            scripted = await self.intercept(key, offset // limit + 1)
            if scripted is not None:
                return scripted
            items = self.lists[key]
            if key == "incidents":
                statuses = request.query_params.getlist("statuses[]")
                items = [i for i in items if not statuses or i["status"] in statuses]
            chunk = items[offset : offset + limit]
            return JSONResponse(
                {
                    key: chunk,
                    "offset": offset,
                    "limit": limit,
                    "more": offset + limit < len(items),
                    "total": None,
                }
            )

        @app.get("/services")
        async def services(request: Request) -> Response:
            return await listed(request, "services")

        @app.get("/incidents")
        async def incidents(request: Request) -> Response:
            return await listed(request, "incidents")

        @app.get("/oncalls")
        async def oncalls(request: Request) -> Response:
            return await listed(request, "oncalls")
