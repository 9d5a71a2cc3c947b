"""Fake Jenkins: crumb issuer, build/buildWithParameters, queue items, builds, stop."""

from __future__ import annotations

import itertools
import secrets
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tests.fakes.server import FakeVendor


class FakeJenkins(FakeVendor):
    user, token = "bot", "jenkins-token"

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.crumbs_enabled = True
        self.jobs: dict[str, dict[str, Any]] = {"team/deploy": {"parameterized": True, "builds": []}}
        self.queue: dict[int, dict[str, Any]] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        # Per next build: (queue polls before it starts, polls while building, result).
        self.scripts: list[tuple[int, int, str]] = []
        self._sessions: dict[str, str] = {}
        self._queue_ids = itertools.count(7)

    def add_routes(self, app: FastAPI) -> None:
        def authorized(request: Request) -> bool:
            import base64

            expected = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
            return request.headers.get("authorization") == f"Basic {expected}"

        @app.get("/crumbIssuer/api/json")
        async def crumb(request: Request) -> Response:
            if not self.crumbs_enabled:
                return PlainTextResponse("Not Found", status_code=404)
            session, value = secrets.token_hex(4), secrets.token_hex(8)
            self._sessions[session] = value
            response = JSONResponse({"crumb": value, "crumbRequestField": "Jenkins-Crumb"})
            response.set_cookie("JSESSIONID", session)
            return response

        @app.post("/job/{rest:path}")
        async def post_job(rest: str, request: Request) -> Response:
            if not authorized(request):
                return PlainTextResponse("Unauthorized", status_code=401)
            if self.crumbs_enabled:
                session = request.cookies.get("JSESSIONID", "")
                if not session or self._sessions.get(session) != request.headers.get("jenkins-crumb"):
                    return PlainTextResponse("No valid crumb was included in the request", status_code=403)
            path, _, verb = rest.rpartition("/")
            if verb == "stop":
                self.builds[_base(request) + "job/" + path + "/"]["result"] = "ABORTED"
                return Response(status_code=302)
            job = self.jobs.get(path.replace("/job/", "/"))
            if job is None:
                return PlainTextResponse("Not Found", status_code=404)
            if verb == "buildWithParameters" and not job["parameterized"]:
                return PlainTextResponse(
                    "java.lang.IllegalStateException: not parameterized", status_code=500
                )
            queued, building, result = self.scripts.pop(0) if self.scripts else (1, 1, "SUCCESS")
            qid = next(self._queue_ids)
            form = dict(parse_qsl((await request.body()).decode()))
            self.queue[qid] = {
                "job": path,
                "polls": queued,
                "building": building,
                "result": result,
                "parameters": form,
                "executable": None,
            }
            return Response(status_code=201, headers={"Location": f"{_base(request)}queue/item/{qid}/"})

        @app.get("/queue/item/{qid}/api/json")
        async def queue_item(qid: int, request: Request) -> Any:
            item = self.queue[qid]
            if item["executable"] is None:
                if item["polls"] > 0:
                    item["polls"] -= 1
                    return {"id": qid, "why": "Waiting for next available executor", "blocked": False}
                name = item["job"].replace("/job/", "/")
                builds = self.jobs[name]["builds"]
                number = len(builds) + 1
                url = f"{_base(request)}job/{item['job']}/{number}/"
                self.builds[url] = {
                    "number": number,
                    "url": url,
                    "building": True,
                    "result": None,
                    "_polls": item["building"],
                    "_result": item["result"],
                    "actions": [
                        {"parameters": [{"name": k, "value": v} for k, v in item["parameters"].items()]}
                    ],
                }
                builds.insert(0, url)
                item["executable"] = {"number": number, "url": url}
            return {"id": qid, "executable": item["executable"]}

        @app.get("/job/{rest:path}/api/json")
        async def job_or_build(rest: str, request: Request) -> Any:
            if not authorized(request):
                return PlainTextResponse("Unauthorized", status_code=401)
            url = f"{_base(request)}job/{rest}/"
            if url in self.builds:
                build = self.builds[url]
                if build["building"] and build["result"] is None:
                    if build["_polls"] > 0:
                        build["_polls"] -= 1
                    else:
                        build.update(building=False, result=build["_result"])
                elif build["result"] == "ABORTED":
                    build["building"] = False
                return {k: v for k, v in build.items() if not k.startswith("_")}
            job = self.jobs.get(rest.replace("/job/", "/"))
            if job is None:
                return PlainTextResponse("Not Found", status_code=404)
            builds = [
                {k: v for k, v in self.builds[u].items() if not k.startswith("_")} for u in job["builds"]
            ]
            return {"name": rest.rsplit("/", 1)[-1], "builds": builds}


def _base(request: Request) -> str:
    return str(request.base_url)
