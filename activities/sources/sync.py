"""The sync's activities: open the record, load the source, pull each resource, complete.

The pull pages through the vendor and POSTs each page of raw items to the catalog, then
heartbeats the next page's cursor. A retry (after a crash, a 5xx, a rate limit longer than
the worker waits in place) resumes at the last heartbeated cursor: the page it was on may be
sent again, and the catalog, which applies a page once, counts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import GantryApi
from activities.errors import BENIGN
from activities.sources.files import FilesSource
from activities.sources.paging import Page, SourceClient, batches, unknown_kind
from contracts.sources import (
    SOURCE_NOT_CONFIGURED,
    PullResource,
    PullResult,
    SourceDefinition,
    SyncCompletion,
    SyncInput,
)
from contracts.steps import VENDOR_CLIENT_ERROR

Json = dict[str, Any]
COUNTS = ("seen", "created", "updated", "unchanged", "failed")
# What each vendor needs set before a source of its kind can sync.
SETTINGS_NEEDED = {
    "github": "GANTRY_GITHUB_TOKEN (and GANTRY_GITHUB_API_URL for GitHub Enterprise)",
    "files": "GANTRY_GITHUB_TOKEN (and GANTRY_GITHUB_API_URL for GitHub Enterprise)",
    "gitlab": "GANTRY_GITLAB_TOKEN (and GANTRY_GITLAB_URL)",
    "jira": "GANTRY_JIRA_URL, GANTRY_JIRA_USER and GANTRY_JIRA_TOKEN",
    "pagerduty": "GANTRY_PAGERDUTY_TOKEN",
    "kubernetes": "GANTRY_KUBERNETES_KUBECONFIG (or run the worker in the cluster)",
    "aws": "AWS credentials and AWS_REGION (or config.regions)",
}
HEARTBEAT_EVERY = 5.0


def not_configured(kind: str) -> ApplicationError:
    needed = SETTINGS_NEEDED.get(kind)
    message = (
        f"the worker has no {kind} settings: set {needed}"
        if needed
        else f"{kind!r} is not a kind of data source the worker pulls"
    )
    return ApplicationError(message, type=SOURCE_NOT_CONFIGURED, non_retryable=True, category=BENIGN)


@contextlib.asynccontextmanager
async def heartbeating(progress: Callable[[], Json]) -> AsyncIterator[None]:
    """Heartbeat ``progress()`` every few seconds while the body runs (a vendor slow to answer
    or a rate limit waited out must not look like a dead worker)."""
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    every = min(HEARTBEAT_EVERY, timeout.total_seconds() / 3) if timeout else HEARTBEAT_EVERY

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat(progress())

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def resumed() -> Json:
    """The progress the last attempt heartbeated, or a fresh start."""
    details = activity.info().heartbeat_details if activity.in_activity() else []
    last = details[0] if details and isinstance(details[0], dict) else {}
    return {
        "cursor": str(last.get("cursor") or ""),
        "pages": int(last.get("pages") or 0),
        "items": int(last.get("items") or 0),
        "counts": dict(last.get("counts") or {}),
        "done": bool(last.get("done")),
    }


def _fetcher(client: SourceClient, pull: PullResource) -> Callable[[str, Json], Awaitable[Page]]:
    """How the pull fetches the page at a cursor: the whole listing, or (a push webhook's sync of
    a files source) only the repositories it names."""
    if not pull.repositories:
        return lambda cursor, memo: client.page(pull.resource_kind, pull.config, pull.selector, cursor, memo)
    if not isinstance(client, FilesSource):
        raise ApplicationError(
            f"a {pull.kind} source does not read single repositories",
            type=VENDOR_CLIENT_ERROR,
            non_retryable=True,
        )
    files = client
    return lambda cursor, memo: files.repository_page(pull.config, pull.repositories, cursor)


class SourceActivities:
    def __init__(self, api: GantryApi, clients: dict[str, SourceClient]) -> None:
        self._api = api
        self._clients = clients

    @activity.defn(name="sources.open_sync")
    async def open_sync(self, sync: SyncInput) -> Json:
        return await self._api.open_sync(sync.data_source, sync.sync_id, sync.trigger)

    @activity.defn(name="sources.load_source")
    async def load_source(self, data_source: str) -> SourceDefinition:
        body = await self._api.data_source(data_source)
        return SourceDefinition(
            identifier=str(body.get("identifier") or data_source),
            kind=str(body.get("kind") or ""),
            config=dict(body.get("config") or {}),
            resources=[dict(r) for r in body.get("resources") or []],
        )

    @activity.defn(name="sources.complete_sync")
    async def complete_sync(self, data_source: str, sync_id: str, completion: SyncCompletion) -> Json:
        return await self._api.complete_sync(data_source, sync_id, dataclasses.asdict(completion))

    @activity.defn(name="sources.pull")
    async def pull(self, pull: PullResource) -> PullResult:
        client = self._clients.get(pull.kind)
        if client is None:
            raise not_configured(pull.kind)
        if pull.kind != "files" and pull.resource_kind not in client.kinds:
            raise unknown_kind(client, pull.resource_kind)
        fetch = _fetcher(client, pull)
        progress = resumed()
        if progress["done"]:  # every page was sent before the last attempt died
            return PullResult(pages=progress["pages"], items=progress["items"], counts=progress["counts"])
        memo: Json = {}
        async with heartbeating(lambda: progress):
            while True:
                cursor = progress["cursor"]
                page = await fetch(cursor, memo)
                counts = dict(progress["counts"])
                fetched_with = cursor if page.fetched_with is None else page.fetched_with
                for name, chunk in batches(fetched_with, page.items):
                    batch = {"resource": pull.resource, "page": name, "items": chunk}
                    answer = await self._api.send_items(pull.data_source, pull.sync_id, batch)
                    for key in COUNTS:
                        counts[key] = counts.get(key, 0) + int(answer.get(key) or 0)
                progress = {
                    "cursor": page.next or "",
                    "pages": progress["pages"] + 1,
                    "items": progress["items"] + len(page.items),
                    "counts": counts,
                    "done": page.next is None,
                }
                activity.heartbeat(progress)
                if page.next is None:
                    return PullResult(pages=progress["pages"], items=progress["items"], counts=counts)
