"""``DataSourceSync``: one sync of a pull data source, ``sync:{data_source}:{sync_id}``.

Opens the sync record, loads the source, pulls each resource in order (an activity that pages
through the vendor and sends every page to the catalog, resuming from its heartbeat after a
crash), then tells the catalog how it ended: SUCCESS when every resource was pulled completely,
PARTIAL when some were not (a page that kept failing, a resource kind the vendor does not
know), FAILURE when the source could not be loaded or no resource could start. Only SUCCESS lets the catalog
delete stale entities, so an incomplete pull never deletes what it did not get to see.

A push webhook's sync of a files source carries ``repositories``: each pull reads only those,
and the catalog (which recorded the scope when it opened the sync) deletes only stale entities
located in them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.search_attributes import GANTRY_DATA_SOURCE
    from contracts.sources import (
        SOURCE_NOT_CONFIGURED,
        SYNC_WORKFLOW,
        UNKNOWN_RESOURCE_KIND,
        PullResource,
        PullResult,
        SourceDefinition,
        SyncCompletion,
        SyncError,
        SyncInput,
        SyncStatus,
        sync_id_of,
    )
    from contracts.steps import STEP_FAILED, VENDOR_CLIENT_ERROR

CATALOG_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=[VENDOR_CLIENT_ERROR],
)
# A page that still fails after these attempts ends the resource (the sync is then PARTIAL).
PULL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=4,
    non_retryable_error_types=[
        VENDOR_CLIENT_ERROR,
        STEP_FAILED,
        UNKNOWN_RESOURCE_KIND,
        SOURCE_NOT_CONFIGURED,
    ],
)
PULL_HEARTBEAT = timedelta(seconds=15)
# A pull that failed with one of these fetched nothing: it failed before its first page.
NOTHING_PULLED = frozenset({UNKNOWN_RESOURCE_KIND, SOURCE_NOT_CONFIGURED, STEP_FAILED})
PULL_TIMEOUT = timedelta(hours=6)
CALL_TIMEOUT = timedelta(minutes=1)


@workflow.defn(name=SYNC_WORKFLOW)
class DataSourceSync:
    @workflow.run
    async def run(self, sync: SyncInput) -> SyncCompletion:
        info = workflow.info()
        sync_id = sync.sync_id or _sync_id_of(sync.data_source, info.workflow_id)
        if info.typed_search_attributes.get(GANTRY_DATA_SOURCE) is None:
            workflow.upsert_search_attributes([GANTRY_DATA_SOURCE.value_set(sync.data_source)])
        opened = SyncInput(
            data_source=sync.data_source,
            sync_id=sync_id,
            trigger=sync.trigger,
            repositories=list(sync.repositories),
        )
        await workflow.execute_activity(
            "sources.open_sync",
            opened,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=CATALOG_RETRY,
            summary=f"open sync {sync_id}",
        )
        try:
            source = await workflow.execute_activity(
                "sources.load_source",
                sync.data_source,
                result_type=SourceDefinition,
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=CATALOG_RETRY,
                summary=f"load {sync.data_source}",
            )
        except ActivityError as exc:
            completion = SyncCompletion(SyncStatus.FAILURE, [SyncError(_reason(exc))])
        else:
            completion = await self._pull_all(source, sync_id, sync.repositories)
        await workflow.execute_activity(
            "sources.complete_sync",
            args=[sync.data_source, sync_id, completion],
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=CATALOG_RETRY,
            summary=f"complete {completion.status.value}",
        )
        return completion

    async def _pull_all(
        self, source: SourceDefinition, sync_id: str, repositories: list[str]
    ) -> SyncCompletion:
        errors: list[SyncError] = []
        pulled_nothing = 0  # resources that failed before any page could be fetched
        for index, resource in enumerate(source.resources):
            kind = str(resource.get("kind") or "")
            workflow.set_current_details(f"**{source.identifier}**: resource {index} ({kind})")
            pull = PullResource(
                data_source=source.identifier,
                sync_id=sync_id,
                kind=source.kind,
                resource=index,
                resource_kind=kind,
                config=source.config,
                selector=dict(resource.get("selector") or {}),
                repositories=list(repositories),
            )
            try:
                await workflow.execute_activity(
                    "sources.pull",
                    pull,
                    result_type=PullResult,
                    start_to_close_timeout=PULL_TIMEOUT,
                    heartbeat_timeout=PULL_HEARTBEAT,
                    retry_policy=PULL_RETRY,
                    summary=f"pull {kind}",
                )
            except ActivityError as exc:
                errors.append(SyncError(f"resource {index} ({kind}): {_reason(exc)}", index))
                pulled_nothing += _cause_type(exc) in NOTHING_PULLED
        if not errors:
            return SyncCompletion(SyncStatus.SUCCESS)
        # FAILURE when no resource could even start (the vendor is not configured, no kind is
        # known, the config is unusable); PARTIAL when some pages may have landed.
        status = SyncStatus.FAILURE if pulled_nothing == len(source.resources) else SyncStatus.PARTIAL
        return SyncCompletion(status, errors)


def _sync_id_of(data_source: str, workflow_id: str) -> str:
    """The sync id in the workflow id (``scheduled-<time>`` for a schedule's run); a workflow
    started under another id names its sync after the whole id rather than failing its task."""
    try:
        return sync_id_of(data_source, workflow_id)
    except ValueError:
        return workflow_id


def _cause_type(exc: ActivityError) -> str | None:
    cause: BaseException | None = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return cause.type if isinstance(cause, ApplicationError) else None


def _reason(exc: ActivityError) -> str:
    """The innermost application error's message (what the vendor or the catalog said)."""
    cause: BaseException | None = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return cause.message if isinstance(cause, ApplicationError) else str(exc.cause or exc)
