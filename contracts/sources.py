"""The data-source sync's contract: how a sync starts, and what the worker sends the catalog.

A sync is the workflow ``sync:{data_source}:{sync_id}``. The worker pages through the vendor
and POSTs each page of raw items to the catalog, which applies the source's selector and
mappings and writes the entities; at the end it tells the catalog how the sync ended, and
the catalog deletes what a complete sync did not see. The worker never maps or writes
entities itself: mappings run where the catalog's limits and permissions are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SYNC_WORKFLOW = "DataSourceSync"
# A schedule's workflows are ``sync:{id}:scheduled-<timestamp>`` (Temporal appends the time).
SCHEDULED = "scheduled"


class SyncStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"
    FAILURE = "FAILURE"


def sync_workflow_id(data_source: str, sync_id: str) -> str:
    return f"sync:{data_source}:{sync_id}"


def sync_id_of(data_source: str, workflow_id: str) -> str:
    """The sync id inside a sync's workflow id (``scheduled-<timestamp>`` for a schedule's)."""
    prefix = f"sync:{data_source}:"
    if not workflow_id.startswith(prefix):
        raise ValueError(f"{workflow_id!r} is not a sync of {data_source!r}")
    return workflow_id[len(prefix) :]


def schedule_id(data_source: str) -> str:
    return f"datasource:{data_source}"


@dataclass
class SyncInput:
    """The workflow's input. A schedule starts it without ``sync_id`` (taken from the workflow
    id); ``POST /v1/data-sources/{id}/syncs`` creates the record first and passes its id."""

    data_source: str
    sync_id: str = ""
    trigger: str = "SCHEDULE"  # SCHEDULE | API | WEBHOOK
    # A push webhook's sync of a files source: only these repositories (``owner/name``) are read.
    repositories: list[str] = field(default_factory=list)


@dataclass
class SyncBatch:
    """One page of raw vendor items (``POST .../syncs/{sync_id}/items``). ``page`` names the
    page (the cursor that fetched it; ``""`` for the first): the catalog applies a page once,
    so a worker that resumes after a crash may send its last page again."""

    resource: int
    page: str
    items: list[Any] = field(default_factory=list)


@dataclass
class SyncError:
    message: str
    resource: int | None = None


@dataclass
class SyncCompletion:
    """How the sync ended (``POST .../syncs/{sync_id}/complete``). Only ``SUCCESS`` lets the
    catalog delete stale entities."""

    status: SyncStatus
    errors: list[SyncError] = field(default_factory=list)


@dataclass
class SourceDefinition:
    """What a sync needs of its source (``GET /v1/data-sources/{id}``): the vendor, its config
    and the resources in order (a resource's index names it in batches and errors)."""

    identifier: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PullResource:
    """The pull activity's input: page through one resource of a source and send each page."""

    data_source: str
    sync_id: str
    kind: str  # the source's kind: the vendor
    resource: int
    resource_kind: str
    config: dict[str, Any] = field(default_factory=dict)
    selector: dict[str, Any] = field(default_factory=dict)
    # Files sources: read only these repositories (``owner/name``; empty: every repository).
    repositories: list[str] = field(default_factory=list)


@dataclass
class PullResult:
    """What one resource's pull sent (pages and items, and the catalog's answers summed)."""

    pages: int = 0
    items: int = 0
    counts: dict[str, int] = field(default_factory=dict)


# A resource kind its vendor client does not know: reported as the resource's error, not retried.
UNKNOWN_RESOURCE_KIND = "UnknownResourceKind"
# A vendor the worker has no settings (credentials) for.
SOURCE_NOT_CONFIGURED = "SourceNotConfigured"
