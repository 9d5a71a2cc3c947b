"""Fake GitHub REST API: workflow dispatch, workflow runs (list, get, cancel), repository."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.fakes.server import FakeVendor


@dataclass
class RunScript:
    """How the next dispatched run behaves: ``polls`` GETs in progress, then ``conclusion``."""

    conclusion: str = "success"
    polls: int = 1
    # The run shows up in list calls only after this many of them (GitHub lists runs late).
    hidden_for_lists: int = 0


@dataclass
class Workflow:
    name: str
    # None accepts any input; else GitHub refuses inputs the workflow does not declare (422).
    inputs: set[str] | None = None
    # The workflow's ``run-name`` shows inputs.gantry_run_id, as recommended in the docs.
    run_name_has_gantry_id: bool = True


class FakeGitHub(FakeVendor):
    token = "ghp-test"

    def reset(self) -> None:
        super().reset()
        self.workflows: dict[str, Workflow] = {"deploy.yml": Workflow("Deploy")}
        self.runs: dict[int, dict[str, Any]] = {}
        self.scripts: list[RunScript] = []
        self._run_state: dict[int, dict[str, int]] = {}
        self._ids = itertools.count(1000)

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def add_run(self, workflow: str, **fields: Any) -> dict[str, Any]:
        """A run that exists before the test dispatches (someone else's)."""
        run_id = next(self._ids)
        run = {
            "id": run_id,
            "name": self.workflows[workflow].name,
            "display_title": self.workflows[workflow].name,
            "workflow": workflow,
            "event": "workflow_dispatch",
            "status": "completed",
            "conclusion": "success",
            "head_branch": "main",
            "created_at": _now(),
            "html_url": f"https://github.example/runs/{run_id}",
            **fields,
        }
        self.runs[run_id] = run
        self._run_state[run_id] = {"polls": 0, "hidden": 0}
        return run

    def add_routes(self, app: FastAPI) -> None:
        def auth(request: Request) -> Response | None:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"message": "Bad credentials"}, status_code=401)
            return None

        @app.get("/repos/{owner}/{repo}")
        async def repository(owner: str, repo: str, request: Request) -> Any:
            return auth(request) or {"full_name": f"{owner}/{repo}", "default_branch": "main"}

        @app.post("/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches")
        async def dispatch(owner: str, repo: str, workflow: str, request: Request) -> Any:
            if denied := auth(request):
                return denied
            body = await request.json()
            wf = self.workflows.get(workflow)
            if wf is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            if not body.get("ref"):
                return JSONResponse({"message": 'Invalid request.\n\n"ref" wasn\'t supplied.'}, 422)
            inputs = body.get("inputs") or {}
            unexpected = sorted(set(inputs) - wf.inputs) if wf.inputs is not None else []
            if unexpected:
                return JSONResponse({"message": f"Unexpected inputs provided: {unexpected}"}, status_code=422)
            script = self.scripts.pop(0) if self.scripts else RunScript()
            run_id = next(self._ids)
            gantry_id = inputs.get("gantry_run_id")
            title = f"{wf.name} {gantry_id}" if wf.run_name_has_gantry_id and gantry_id else wf.name
            self.runs[run_id] = {
                "id": run_id,
                "name": wf.name,
                "display_title": title,
                "workflow": workflow,
                "event": "workflow_dispatch",
                "status": "queued",
                "conclusion": None,
                "head_branch": body["ref"],
                "created_at": _now(),
                "inputs": inputs,
                "html_url": f"{str(request.base_url).rstrip('/')}/{owner}/{repo}/actions/runs/{run_id}",
                "_script": script,
            }
            self._run_state[run_id] = {"polls": 0, "hidden": script.hidden_for_lists}
            return Response(status_code=204)

        @app.get("/repos/{owner}/{repo}/actions/workflows/{workflow}/runs")
        async def list_runs(owner: str, repo: str, workflow: str, request: Request) -> Any:
            if denied := auth(request):
                return denied
            event = request.query_params.get("event")
            created = request.query_params.get("created", "")
            since = created.removeprefix(">=") if created.startswith(">=") else ""
            runs = []
            for run in sorted(self.runs.values(), key=lambda r: -r["id"]):
                state = self._run_state[run["id"]]
                if state["hidden"] > 0:
                    state["hidden"] -= 1
                    continue
                if run["workflow"] != workflow or (event and run["event"] != event):
                    continue
                if since and run["created_at"] < since:
                    continue
                runs.append(_public(run))
            return {"total_count": len(runs), "workflow_runs": runs}

        @app.get("/repos/{owner}/{repo}/actions/runs/{run_id}")
        async def get_run(owner: str, repo: str, run_id: int, request: Request) -> Any:
            if denied := auth(request):
                return denied
            run = self.runs.get(run_id)
            if run is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            script: RunScript | None = run.get("_script")
            if script and run["status"] != "completed":
                state = self._run_state[run_id]
                if state["polls"] >= script.polls:
                    run.update(status="completed", conclusion=script.conclusion)
                else:
                    state["polls"] += 1
                    run["status"] = "in_progress"
            return _public(run)

        @app.post("/repos/{owner}/{repo}/actions/runs/{run_id}/cancel")
        async def cancel(owner: str, repo: str, run_id: int) -> Any:
            self.runs[run_id].update(status="completed", conclusion="cancelled")
            return JSONResponse({}, status_code=202)


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not k.startswith("_") and k not in ("workflow", "inputs")}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
