"""worker.py's start-up: the namespace is prepared idempotently before the worker polls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

from config import Settings
from tests.temporal_env import start_dev_server
from worker import SEARCH_ATTRIBUTES, prepare_namespace
from workflows.reconcile import EVERY, SCHEDULE_ID

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


async def test_start_up_creates_the_reconcile_schedule_and_can_run_again(
    temporal: WorkflowEnvironment,
) -> None:
    client = temporal.client
    await prepare_namespace(client, _settings("gantry-a"))

    described = await client.get_schedule_handle(SCHEDULE_ID).describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "ReconcileRuns" and action.task_queue == "gantry-a"
    assert [spec.every for spec in described.schedule.spec.intervals] == [EVERY] == [timedelta(minutes=1)]
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert set(SEARCH_ATTRIBUTES) <= await _custom_attributes(client)

    # A second worker (or a restart) finds it there, and brings it in line with its settings.
    await client.get_schedule_handle(SCHEDULE_ID).pause(note="paused by an operator")
    await prepare_namespace(client, _settings("gantry-b"))
    described = await client.get_schedule_handle(SCHEDULE_ID).describe()
    assert isinstance(described.schedule.action, ScheduleActionStartWorkflow)
    assert described.schedule.action.task_queue == "gantry-b"
    assert described.schedule.state.paused, "an operator's pause survives a restart"
