"""CI step kinds: ``github.workflow_dispatch``, ``gitlab.pipeline``, ``jenkins.build``.

Each one starts exactly one build per run step, even when its activity is retried:

* after starting, it heartbeats the build's id (``{"run_id": ...}``); a retry reads
  ``activity.info().heartbeat_details`` and resumes that build instead of starting another;
* on a retry without such details (the worker died before the heartbeat reached Temporal), it
  looks for a build tagged with the step's idempotency key before starting one: GitHub input
  ``gantry_run_id`` (shown in the run's title when the workflow's ``run-name`` uses it), GitLab
  variable ``GANTRY_RUN_ID``, Jenkins parameter ``GANTRY_RUN_ID``.

While waiting it polls and heartbeats; a cancelled step cancels the build (best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import bad_params, request, send, step_failed, vendor_error
from activities.urls import segment, segments
from contracts.steps import VENDOR_SERVER_ERROR, Link, StepInput, StepResult

GANTRY_INPUT = "gantry_run_id"
GANTRY_VARIABLE = "GANTRY_RUN_ID"
_GITHUB_OK = {"success", "neutral", "skipped"}
_GITLAB_DONE = {"success", "failed", "canceled", "skipped"}
_GITLAB_OK = {"success", "skipped"}
# How far before "now" a just-dispatched run may claim to have been created (clock skew).
_SKEW = timedelta(seconds=5)

Json = dict[str, Any]


def previous_progress() -> Json:
    """What an earlier attempt of this activity heartbeated (empty on the first attempt)."""
    details = activity.info().heartbeat_details
    return details[0] if details and isinstance(details[0], dict) else {}


async def poll_until(
    fetch: Callable[[], Awaitable[Json]], done: Callable[[Json], bool], interval: float, progress: Json
) -> Json:
    """Fetch until ``done``, heartbeating ``progress`` plus the current status each round."""
    while True:
        state = await fetch()
        activity.heartbeat({**progress, "status": state.get("status") or state.get("result")})
        if done(state):
            return state
        await asyncio.sleep(interval)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_github_repo(repo: str) -> str:
    """``owner/name`` from ``owner/name`` or a repository URL (``https://github.com/owner/name.git``)."""
    path = urlsplit(repo).path if "://" in repo else repo
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 2 or ("://" not in repo and len(parts) != 2):
        raise bad_params(
            f"github.workflow_dispatch: repo must be owner/name or a repository URL, got {repo!r}"
        )
    owner, name = (
        segment(parts[0], "GitHub owner"),
        segment(parts[1].removesuffix(".git"), "GitHub repository"),
    )
    return f"{owner}/{name}"


class GitHubActions:
    """``github.workflow_dispatch``; the client has base_url=GitHub's API and a Bearer token.

    GitHub's dispatch answers 204 without the run, so the run is found by listing the
    workflow's ``workflow_dispatch`` runs created since the dispatch: first by the idempotency key
    in the run title (``run-name: Deploy ${{ inputs.gantry_run_id }}``), else the oldest new run
    on the dispatched ref that was not there before the dispatch.
    """

    def __init__(
        self, client: httpx.AsyncClient, poll_interval: float = 10.0, discovery_timeout: float = 120.0
    ):
        self._client = client
        self._poll = poll_interval
        self._discovery_timeout = discovery_timeout

    async def _get(self, url: str, **params: Any) -> Any:
        return (await send(self._client, "GitHub", "GET", url, params=params or None)).json()

    @activity.defn(name="github.workflow_dispatch")
    async def workflow_dispatch(self, step: StepInput) -> StepResult:
        params = step.params
        repo = parse_github_repo(str(params.get("repo") or ""))
        if not params.get("workflow"):
            raise bad_params("github.workflow_dispatch needs a workflow (file name or id)")
        workflow = segment(params["workflow"], "GitHub workflow")
        ref = str(params.get("ref") or (await self._get(f"/repos/{repo}"))["default_branch"])
        ref = ref.removeprefix("refs/heads/")
        runs_url = f"/repos/{repo}/actions/workflows/{workflow}/runs"
        log: list[str] = []

        progress = previous_progress()
        run: Json | None = None
        if progress.get("run_id"):
            run = await self._get(f"/repos/{repo}/actions/runs/{segment(progress['run_id'])}")
        elif activity.info().attempt > 1:
            dispatched_at = progress.get("dispatched_at")
            since = _parse_time(dispatched_at) if dispatched_at else activity.info().scheduled_time
            # Without proof that an earlier attempt dispatched, only an exact key match counts.
            run = await self._find_run(runs_url, step.idempotency_key, ref, since, by_ref=bool(dispatched_at))
        if run is None:
            before = frozenset(
                r["id"] for r in await self._list_runs(runs_url, datetime.now(UTC) - timedelta(minutes=10))
            )
            dispatched_at_dt = datetime.now(UTC)
            run = await self._dispatch(repo, workflow, ref, params.get("inputs") or {}, step.idempotency_key)
            activity.heartbeat({"dispatched_at": dispatched_at_dt.isoformat()})
            log.append(f"dispatched {params['workflow']} on {repo}@{ref}")
            run = run or await self._discover(runs_url, step.idempotency_key, ref, dispatched_at_dt, before)
        else:
            log.append(f"found run {run['id']} dispatched by an earlier attempt")
        progress = {"run_id": run["id"]}
        activity.heartbeat(progress)

        if params.get("wait_for_completion", False):
            run = await self._wait(repo, run, progress)
        url = run.get("html_url", "")
        outputs = {
            "run_id": run["id"],
            "run_url": url,
            "status": run.get("status"),
            "conclusion": run.get("conclusion"),
        }
        if run.get("status") == "completed" and run.get("conclusion") not in _GITHUB_OK:
            raise step_failed(f"GitHub Actions run {url} concluded {run.get('conclusion')}")
        return StepResult(outputs=outputs, links=[Link("GitHub Actions run", url)], log=log)

    async def _dispatch(self, repo: str, workflow: str, ref: str, inputs: Json, key: str) -> Json | None:
        """Dispatch; the run when GitHub returns it (newer API versions), else None."""
        body_inputs = {k: _as_text(v) for k, v in inputs.items() if v is not None}
        url = f"/repos/{repo}/actions/workflows/{workflow}/dispatches"
        body = {"ref": ref, "inputs": {**body_inputs, GANTRY_INPUT: key}}
        response = await request(self._client, "GitHub", "POST", url, json=body)
        if response.status_code == 422 and GANTRY_INPUT in response.text:
            # The workflow does not declare gantry_run_id: nothing was dispatched, send without it.
            response = await request(
                self._client, "GitHub", "POST", url, json={"ref": ref, "inputs": body_inputs}
            )
        if not response.is_success:
            raise vendor_error("GitHub", response)
        answer = response.json() if response.content else {}
        if answer.get("workflow_run_id"):
            return await self._get(f"/repos/{repo}/actions/runs/{segment(answer['workflow_run_id'])}")
        return None

    async def _list_runs(self, runs_url: str, since: datetime) -> list[Json]:
        page = await self._get(runs_url, event="workflow_dispatch", created=f">={_iso(since)}", per_page=100)
        return list(page.get("workflow_runs") or [])

    async def _find_run(
        self,
        runs_url: str,
        key: str,
        ref: str,
        since: datetime,
        *,
        by_ref: bool,
        exclude: frozenset[int] = frozenset(),
    ) -> Json | None:
        runs = await self._list_runs(runs_url, since - timedelta(minutes=5))
        for run in runs:
            if key in (run.get("display_title") or "") or key in (run.get("name") or ""):
                return run
        if not by_ref:
            return None
        fresh = [
            r
            for r in runs
            if r["id"] not in exclude
            and r.get("head_branch") == ref
            and _parse_time(r["created_at"]) >= since - _SKEW
        ]
        return min(fresh, key=lambda r: (r["created_at"], r["id"])) if fresh else None

    async def _discover(
        self, runs_url: str, key: str, ref: str, since: datetime, before: frozenset[int]
    ) -> Json:
        deadline = asyncio.get_running_loop().time() + self._discovery_timeout
        while True:
            run = await self._find_run(runs_url, key, ref, since, by_ref=True, exclude=before)
            if run is not None:
                return run
            if asyncio.get_running_loop().time() > deadline:
                # Retryable: the retry sees dispatched_at in the heartbeat and looks again, never re-dispatching.
                raise ApplicationError(
                    f"GitHub did not list the dispatched run within {self._discovery_timeout}s",
                    type=VENDOR_SERVER_ERROR,
                )
            activity.heartbeat({"dispatched_at": since.isoformat()})
            await asyncio.sleep(min(self._poll, 3.0))

    async def _wait(self, repo: str, run: Json, progress: Json) -> Json:
        url = f"/repos/{repo}/actions/runs/{segment(run['id'])}"
        try:
            return await poll_until(
                lambda: self._get(url), lambda r: r.get("status") == "completed", self._poll, progress
            )
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._client.post(f"{url}/cancel")
            raise


def gitlab_project(project: Any) -> str:
    """A GitLab project id, or its path (``group/sub/name`` or a project URL) URL-encoded."""
    text = str(project or "").strip()
    if not text:
        raise bad_params("gitlab.pipeline needs a project (id or path)")
    if "://" in text:
        text = urlsplit(text).path
    return segment(text.strip("/").removesuffix(".git"), "GitLab project")


class GitLab:
    """``gitlab.pipeline``; the client has base_url=the GitLab URL and a ``PRIVATE-TOKEN`` header."""

    def __init__(self, client: httpx.AsyncClient, poll_interval: float = 10.0):
        self._client = client
        self._poll = poll_interval

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return (await send(self._client, "GitLab", method, url, **kwargs)).json()

    @activity.defn(name="gitlab.pipeline")
    async def pipeline(self, step: StepInput) -> StepResult:
        params = step.params
        base = f"/api/v4/projects/{gitlab_project(params.get('project'))}"
        ref = str(params.get("ref") or (await self._call("GET", base))["default_branch"])
        log: list[str] = []
        progress = previous_progress()
        pipeline: Json | None = None
        if progress.get("run_id"):
            pipeline = await self._call("GET", f"{base}/pipelines/{segment(progress['run_id'])}")
        elif activity.info().attempt > 1:
            pipeline = await self._find(base, ref, step.idempotency_key)
        if pipeline is None:
            variables = [
                {"key": str(k), "value": _as_text(v)} for k, v in (params.get("variables") or {}).items()
            ]
            variables.append({"key": GANTRY_VARIABLE, "value": step.idempotency_key})
            pipeline = await self._call("POST", f"{base}/pipeline", json={"ref": ref, "variables": variables})
            log.append(f"created pipeline {pipeline['id']} on {ref}")
        else:
            log.append(f"found pipeline {pipeline['id']} created by an earlier attempt")
        progress = {"run_id": pipeline["id"]}
        activity.heartbeat(progress)

        if params.get("wait_for_completion", False):
            url = f"{base}/pipelines/{segment(pipeline['id'])}"
            try:
                pipeline = await poll_until(
                    lambda: self._call("GET", url),
                    lambda p: p.get("status") in _GITLAB_DONE,
                    self._poll,
                    progress,
                )
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self._client.post(f"{url}/cancel")
                raise
        web_url = pipeline.get("web_url", "")
        outputs = {"pipeline_id": pipeline["id"], "pipeline_url": web_url, "status": pipeline.get("status")}
        if pipeline.get("status") in _GITLAB_DONE - _GITLAB_OK:
            raise step_failed(f"GitLab pipeline {web_url} ended {pipeline.get('status')}")
        return StepResult(outputs=outputs, links=[Link("GitLab pipeline", web_url)], log=log)

    async def _find(self, base: str, ref: str, key: str) -> Json | None:
        since = _iso(activity.info().scheduled_time - timedelta(minutes=5))
        pipelines = await self._call("GET", f"{base}/pipelines", params={"ref": ref, "updated_after": since})
        for pipeline in pipelines:
            url = f"{base}/pipelines/{segment(pipeline['id'])}"
            variables = await self._call("GET", f"{url}/variables")
            if any(v.get("key") == GANTRY_VARIABLE and v.get("value") == key for v in variables):
                return await self._call("GET", url)
        return None


def jenkins_job_path(job: Any) -> str:
    """``folder/sub/job`` → ``/job/folder/job/sub/job/job``."""
    if not str(job or "").strip("/"):
        raise bad_params("jenkins.build needs a job (e.g. folder/name)")
    return "".join(f"/job/{part}" for part in segments(job, "Jenkins job"))


class Jenkins:
    """``jenkins.build``; the client has base_url=the Jenkins URL and basic auth user:API token."""

    def __init__(self, client: httpx.AsyncClient, poll_interval: float = 10.0):
        self._client = client
        self._poll = poll_interval

    async def _json(self, url: str, **params: Any) -> Json:
        api = url.rstrip("/") + "/api/json"
        return (await send(self._client, "Jenkins", "GET", api, params=params or None)).json()

    @activity.defn(name="jenkins.build")
    async def build(self, step: StepInput) -> StepResult:
        params = step.params
        job = jenkins_job_path(params.get("job"))
        parameters = {str(k): _as_text(v) for k, v in (params.get("parameters") or {}).items()}
        log: list[str] = []
        progress = previous_progress()
        build_url = progress.get("build_url")
        queue_url = progress.get("queue_url")
        if not (build_url or queue_url) and activity.info().attempt > 1 and parameters:
            build_url = await self._find_build(job, step.idempotency_key)
        if not (build_url or queue_url):
            queue_url = await self._trigger(job, parameters, step.idempotency_key)
            activity.heartbeat({"queue_url": queue_url})
            log.append(f"queued {params['job']}: {queue_url}")
        if not build_url:
            item = await poll_until(
                lambda: self._json(str(queue_url)),
                lambda q: bool(q.get("cancelled") or (q.get("executable") or {}).get("url")),
                self._poll,
                {"queue_url": queue_url},
            )
            if item.get("cancelled"):
                raise step_failed(f"Jenkins cancelled queue item {queue_url} of {params['job']}")
            build_url = item["executable"]["url"]
        progress = {"build_url": build_url}
        activity.heartbeat(progress)

        build = await self._json(build_url)
        if params.get("wait_for_completion", True):
            try:
                build = await poll_until(
                    lambda: self._json(build_url), lambda b: not b.get("building"), self._poll, progress
                )
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self._client.post(f"{build_url.rstrip('/')}/stop", headers=await self._crumb())
                raise
        outputs = {"build_number": build.get("number"), "build_url": build_url, "result": build.get("result")}
        if not build.get("building") and build.get("result") != "SUCCESS":
            raise step_failed(f"Jenkins build {build_url} ended {build.get('result')}")
        return StepResult(outputs=outputs, links=[Link("Jenkins build", build_url)], log=log)

    async def _crumb(self) -> dict[str, str]:
        """CSRF crumb header when the server issues one (it is tied to the session cookie the client keeps)."""
        response = await request(self._client, "Jenkins", "GET", "/crumbIssuer/api/json")
        if response.status_code == 404:
            return {}
        if not response.is_success:
            raise vendor_error("Jenkins", response)
        crumb = response.json()
        return {crumb["crumbRequestField"]: crumb["crumb"]}

    async def _trigger(self, job: str, parameters: dict[str, str], key: str) -> str:
        # A job without parameters refuses buildWithParameters; Jenkins drops undeclared parameters.
        url, data = (
            (f"{job}/buildWithParameters", {**parameters, GANTRY_VARIABLE: key})
            if parameters
            else (f"{job}/build", None)
        )
        response = await send(self._client, "Jenkins", "POST", url, data=data, headers=await self._crumb())
        location = response.headers.get("location")
        if not location:
            raise step_failed(f"Jenkins accepted {job} but gave no queue item (Location header)")
        return location

    async def _find_build(self, job: str, key: str) -> str | None:
        tree = "builds[url,actions[parameters[name,value]]]{0,20}"
        for build in (await self._json(job, tree=tree)).get("builds") or []:
            for action in build.get("actions") or []:
                for param in (action or {}).get("parameters") or []:
                    if param.get("name") == GANTRY_VARIABLE and param.get("value") == key:
                        return str(build["url"])
        return None
