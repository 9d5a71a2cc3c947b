"""worker.py's start-up: the namespace is prepared idempotently before the worker polls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from config import Settings
from tests.temporal_env import start_dev_server
from worker import SEARCH_ATTRIBUTES, prepare_namespace
from workflows.reconcile import SCHEDULE_ID

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    # Without Gantry's search attributes, so start-up has to register them.
    async with start_dev_server(search_attributes=()) as env:
        yield env


def _settings(task_queue: str) -> Settings:
    return Settings(task_queue=task_queue)


async def _custom_attributes(client: Client) -> set[str]:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return set(answer.custom_attributes)


async def test_start_up_starts_one_reconcile_loop_and_can_run_again(
    temporal: WorkflowEnvironment,
) -> None:
    client = temporal.client
    # A Schedule from before the loops is removed, so it stops starting one execution a minute.
    await client.create_schedule(
        SCHEDULE_ID,
        Schedule(
            action=ScheduleActionStartWorkflow("ReconcileRuns", id=SCHEDULE_ID, task_queue="gantry-a"),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        ),
    )
    await prepare_namespace(client, _settings("gantry-a"))

    first = await client.get_workflow_handle(SCHEDULE_ID).describe()
    assert first.workflow_type == "ReconcileRuns" and first.task_queue == "gantry-a"
    assert first.status == WorkflowExecutionStatus.RUNNING
    assert set(SEARCH_ATTRIBUTES) <= await _custom_attributes(client)
    with pytest.raises(RPCError):
        await client.get_schedule_handle(SCHEDULE_ID).describe()

    # A restart on the same task queue finds the loop running and leaves it alone.
    await prepare_namespace(client, _settings("gantry-a"))
    again = await client.get_workflow_handle(SCHEDULE_ID).describe()
    assert again.run_id == first.run_id

    # A worker on another task queue moves the loop there.
    await prepare_namespace(client, _settings("gantry-b"))
    moved = await client.get_workflow_handle(SCHEDULE_ID).describe()
    assert moved.task_queue == "gantry-b" and moved.run_id != first.run_id
    assert moved.status == WorkflowExecutionStatus.RUNNING
    listed = [w async for w in client.list_workflows(f"WorkflowId = '{SCHEDULE_ID}'")]
    assert len(listed) == 2, "one execution per loop (the moved one and the terminated one), not per pass"
