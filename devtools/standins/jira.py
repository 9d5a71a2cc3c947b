"""Fake Jira REST API v2: issues, JQL search by label, transitions, comments (with properties).

``cloud=True`` behaves like Jira Cloud (``/search`` is gone: 410; ``/search/jql`` answers);
``cloud=False`` like Server/Data Center (only ``/search``). Projects: ``OPS``.

``make run`` serves :func:`create_app` as the Jira stand-in (user ``bot@example.com``, token
``jira-token``): ``GET /issues`` lists what was created and ``GET /browse/<key>`` (the link a
run's step shows) one issue, with its comments; each request is a line in its log.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from devtools.standins.server import FakeVendor, standin_logger

TRANSITIONS: list[dict[str, Any]] = [
    {"id": "11", "name": "Start progress", "to": {"name": "In Progress"}},
    {"id": "21", "name": "Resolve", "to": {"name": "Done"}},
]


class FakeJira(FakeVendor):
    user, token = "bot@example.com", "jira-token"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.cloud = False
        self.projects = {"OPS"}
        self.issues: dict[str, dict[str, Any]] = {}
        # How many more searches miss every issue (Jira's index trails writes).
        self.index_lag = 0

    def add_issue(self, key: str, status: str = "To Do", labels: list[str] | None = None) -> dict[str, Any]:
        issue = {
            "id": str(10000 + len(self.issues)),
            "key": key,
            "fields": {"summary": key, "status": {"name": status}, "labels": labels or []},
            "comments": [],
        }
        self.issues[key] = issue
        return issue

    def add_routes(self, app: FastAPI) -> None:
        def guard(request: Request) -> Response | None:
            expected = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return JSONResponse({"errorMessages": ["You are not authenticated."]}, status_code=401)
            return None

        def issue_or_404(key: str) -> dict[str, Any] | Response:
            issue = self.issues.get(key) or next((i for i in self.issues.values() if i["id"] == key), None)
            if issue is None:
                return JSONResponse(
                    {
                        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                        "errors": {},
                    },
                    status_code=404,
                )
            return issue

        @app.get("/issues")
        async def list_issues() -> Any:
            """Not Jira's: every issue, oldest first (for a person looking at the stand-in)."""
            return {"issues": list(self.issues.values())}

        @app.get("/browse/{key}")
        async def browse(key: str) -> Any:
            """Where Jira shows an issue to people; here its JSON, comments included."""
            return issue_or_404(key)

        @app.post("/rest/api/2/issue")
        async def create(request: Request) -> Any:
            if denied := guard(request):
                return denied
            fields = (await request.json())["fields"]
            errors = {}
            if fields.get("project", {}).get("key") not in self.projects:
                errors["project"] = "valid project is required"
            if not fields.get("summary"):
                errors["summary"] = "You must specify a summary of the issue."
            if errors:
                return JSONResponse({"errorMessages": [], "errors": errors}, status_code=400)
            key = f"{fields['project']['key']}-{len(self.issues) + 1}"
            issue = self.add_issue(key, labels=fields.get("labels"))
            issue["fields"].update({k: v for k, v in fields.items() if k != "labels"})
            return JSONResponse(
                {"id": issue["id"], "key": key, "self": f"{request.base_url}rest/api/2/issue/{key}"},
                status_code=201,
            )

        async def search(request: Request) -> Any:
            if denied := guard(request):
                return denied
            jql = request.query_params.get("jql", "")
            self.index_lag -= 1
            match = re.search(r'labels\s*=\s*"([^"]+)"', jql)
            found = [
                {"id": i["id"], "key": i["key"], "fields": i["fields"]}
                for i in self.issues.values()
                if self.index_lag < 0 and (match is None or match.group(1) in i["fields"]["labels"])
            ]
            return {"issues": found, "total": len(found), "isLast": True}

        @app.get("/rest/api/2/search")
        async def search_old(request: Request) -> Any:
            if self.cloud:
                return JSONResponse(
                    {"errorMessages": ["The requested API has been removed."]}, status_code=410
                )
            return await search(request)

        @app.get("/rest/api/2/search/jql")
        async def search_jql(request: Request) -> Any:
            if not self.cloud:
                return JSONResponse({"errorMessages": ["null for uri"]}, status_code=404)
            return await search(request)

        @app.get("/rest/api/2/issue/{key}")
        async def get_issue(key: str, request: Request) -> Any:
            issue = issue_or_404(key)
            return issue if isinstance(issue, Response) else {k: issue[k] for k in ("id", "key", "fields")}

        @app.get("/rest/api/2/issue/{key}/transitions")
        async def transitions(key: str, request: Request) -> Any:
            if denied := guard(request):
                return denied
            issue = issue_or_404(key)
            if isinstance(issue, Response):
                return issue
            current = issue["fields"]["status"]["name"]
            return {"transitions": [t for t in TRANSITIONS if t["to"]["name"] != current]}

        @app.post("/rest/api/2/issue/{key}/transitions")
        async def transition(key: str, request: Request) -> Any:
            issue = issue_or_404(key)
            if isinstance(issue, Response):
                return issue
            wanted = (await request.json())["transition"]["id"]
            match = next((t for t in TRANSITIONS if t["id"] == wanted), None)
            if match is None:
                return JSONResponse(
                    {"errorMessages": ["Transition id is not valid"], "errors": {}}, status_code=400
                )
            issue["fields"]["status"] = dict(match["to"])
            return Response(status_code=204)

        @app.post("/rest/api/2/issue/{key}/comment")
        async def add_comment(key: str, request: Request) -> Any:
            issue = issue_or_404(key)
            if isinstance(issue, Response):
                return issue
            body = await request.json()
            comment = {
                "id": str(20000 + sum(len(i["comments"]) for i in self.issues.values())),
                "body": body["body"],
                "properties": body.get("properties") or [],
            }
            issue["comments"].append(comment)
            return JSONResponse({k: v for k, v in comment.items() if k != "properties"}, status_code=201)

        @app.get("/rest/api/2/issue/{key}/comment")
        async def comments(key: str, request: Request) -> Any:
            issue = issue_or_404(key)
            if isinstance(issue, Response):
                return issue
            expand = "properties" in request.query_params.get("expand", "")
            listed = [
                c if expand else {k: v for k, v in c.items() if k != "properties"} for c in issue["comments"]
            ]
            return {"comments": listed[::-1], "total": len(listed)}


def create_app() -> FastAPI:
    """The stand-in ``make run`` serves (``uvicorn devtools.standins.jira:create_app --factory``)."""
    jira = FakeJira()
    jira.log = standin_logger("jira")
    return jira.app
