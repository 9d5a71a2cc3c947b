"""Paging through a vendor: one page per request, a cursor per page, rate limits waited out.

A page is named by the cursor that fetched it (``""`` for the first); the cursor of the next
page is what the pull heartbeats, so a retry after a crash fetches that page again. Cursors are
strings the vendor client alone reads: a ``Link`` URL, a page number, an offset, or JSON for
nested listings (the pull requests of each repository in turn).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import httpx
from temporalio.exceptions import ApplicationError

from activities.errors import BENIGN, bad_params, request, retry_after, vendor_error
from contracts.sources import UNKNOWN_RESOURCE_KIND

Json = dict[str, Any]
# How many items a vendor is asked for per request; the pull sends at most MAX_BATCH per POST.
PAGE_SIZE = 100
MAX_BATCH = 500


@dataclass
class Page:
    items: list[Any] = field(default_factory=list)
    next: str | None = None  # the cursor of the next page; None after the last
    # The cursor that really fetched it, when not the one asked for (a listing restarted
    # because its cursor expired): the page is named after it.
    fetched_with: str | None = None


class SourceClient(Protocol):
    """A vendor's pull client: which resource kinds it knows, and one page of one of them.
    ``memo`` lives as long as one attempt of the pull: what a nested listing lists first
    (repositories, clusters) is fetched once per attempt, not once per page."""

    vendor: str
    kinds: frozenset[str]

    async def page(self, kind: str, config: Json, selector: Json, cursor: str, memo: Json) -> Page: ...


def unknown_kind(client: SourceClient, kind: str) -> ApplicationError:
    known = ", ".join(sorted(client.kinds))
    return ApplicationError(
        f"{client.vendor} has no resource kind {kind!r} (it knows {known})",
        type=UNKNOWN_RESOURCE_KIND,
        non_retryable=True,
        category=BENIGN,
    )


def required(config: Json, name: str, vendor: str) -> str:
    value = config.get(name)
    if not isinstance(value, str) or not value:
        raise bad_params(f"a {vendor} data source needs config.{name} (a string)")
    return value


def rate_limited(response: httpx.Response) -> bool:
    """429, or GitHub's 403 with no requests left (or a Retry-After: a secondary limit)."""
    return response.status_code == 429 or (
        response.status_code == 403
        and (response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers)
    )


class VendorHttp:
    """GETs against one vendor's client. A rate-limit answer is waited out in place (the pull's
    heartbeats keep going) up to ``max_wait`` seconds per request; a longer one, a 5xx or a
    network error is a retryable error (Temporal retries the pull from its last cursor), any
    other 4xx a non-retryable one."""

    def __init__(self, client: httpx.AsyncClient, vendor: str, max_wait: float = 120.0) -> None:
        self.client = client
        self.vendor = vendor
        self._max_wait = max_wait

    async def get(self, url: str, params: Json | None = None) -> httpx.Response:
        waited = 0.0
        while True:
            response = await request(self.client, self.vendor, "GET", url, params=params)
            if response.is_success:
                return response
            delay = retry_after(response.headers) if rate_limited(response) else None
            seconds = max(delay.total_seconds(), 0.1) if delay is not None else None
            if seconds is None or waited + seconds > self._max_wait:
                raise vendor_error(self.vendor, response)
            await asyncio.sleep(seconds)
            waited += seconds

    async def get_found(self, url: str, params: Json | None = None) -> httpx.Response | None:
        """The response, or None for a 404 (a file that is not there)."""
        try:
            return await self.get(url, params)
        except ApplicationError as exc:
            if exc.details and exc.details[0] == {"status": 404}:
                return None
            raise

    async def json(self, url: str, params: Json | None = None) -> Any:
        return (await self.get(url, params)).json()

    def same_origin(self, url: str) -> str:
        """``url`` when it is on this vendor's base URL: a next-page link elsewhere would carry
        the worker's credentials to another host."""
        base, target = self.client.base_url, httpx.URL(url)
        if not target.is_relative_url and (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise ApplicationError(
                f"{self.vendor} sent a next-page link to another host ({target.host}); not followed",
                type="VendorClientError",
                non_retryable=True,
                category=BENIGN,
            )
        return url


ChildPage = Callable[[str, str], Awaitable[Page]]


async def nested(parents: list[str], cursor: str, child_page: ChildPage) -> Page:
    """A listing per parent (the pull requests of each repository), parents in sorted order:
    the cursor says which parent and which of its pages. A parent gone since the cursor was
    made resumes at the next one in order."""
    parents = sorted(parents)
    if not parents:
        return Page()
    state = json.loads(cursor) if cursor else {"parent": parents[0], "page": ""}
    parent, page_cursor = str(state["parent"]), str(state.get("page") or "")
    if parent not in parents:
        later = [p for p in parents if p > parent]
        if not later:
            return Page()
        parent, page_cursor = later[0], ""
    page = await child_page(parent, page_cursor)
    if page.next:
        return Page(page.items, json.dumps({"parent": parent, "page": page.next}))
    index = parents.index(parent)
    if index + 1 < len(parents):
        return Page(page.items, json.dumps({"parent": parents[index + 1], "page": ""}))
    return Page(page.items)


def jsonable(value: Any) -> Any:
    """``value`` as JSON: dates and datetimes (boto3's, YAML's) as ISO 8601 text, bytes dropped."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def batches(cursor: str, items: list[Any]) -> list[tuple[str, list[Any]]]:
    """A fetched page as the batches sent to the catalog, at most MAX_BATCH items each, named
    ``cursor``, ``cursor#1``, ``cursor#2``... (the same names when the page is fetched again)."""
    chunks = [items[i : i + MAX_BATCH] for i in range(0, len(items), MAX_BATCH)]
    return [(cursor if n == 0 else f"{cursor}#{n}", chunk) for n, chunk in enumerate(chunks)]
