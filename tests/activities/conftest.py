"""Fixtures for the step activities: one fake server per vendor for the session (reset before
each test), an ``ActivityEnvironment`` that records heartbeats, and helpers for retries."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from contracts.steps import StepInput
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.jira import FakeJira
from tests.fakes.moto import moto_server
from tests.fakes.server import FakeVendor, serve
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import FakeWebhookReceiver

POLL = 0.02
F = TypeVar("F", bound=FakeVendor)


class Env(ActivityEnvironment):
    """An ActivityEnvironment that keeps every heartbeat's details."""

    def __init__(self) -> None:
        super().__init__()
        self.heartbeats: list[Any] = []
        self.on_heartbeat = lambda *details: self.heartbeats.append(details[0] if details else None)

    def retrying(self, attempt: int = 2, progress: dict[str, Any] | None = None) -> Env:
        """Act as a later attempt that inherits ``progress`` from the last heartbeat."""
        self.info = dataclasses.replace(
            self.info,
            attempt=attempt,
            heartbeat_details=[progress] if progress else [],
            scheduled_time=datetime.now(UTC),
        )
        return self


@pytest.fixture
def env() -> Env:
    return Env()


def step(uses: str, step_id: str = "deploy", run_id: str = "run-1", **params: Any) -> StepInput:
    return StepInput(run_id=run_id, step_id=step_id, uses=uses, params=params)


def _running(fake: F) -> Iterator[F]:
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="session")
def _github() -> Iterator[FakeGitHub]:
    yield from _running(FakeGitHub())


@pytest.fixture(scope="session")
def _gitlab() -> Iterator[FakeGitLab]:
    yield from _running(FakeGitLab())


@pytest.fixture(scope="session")
def _jenkins() -> Iterator[FakeJenkins]:
    yield from _running(FakeJenkins())


@pytest.fixture(scope="session")
def _jira() -> Iterator[FakeJira]:
    yield from _running(FakeJira())


@pytest.fixture(scope="session")
def _slack() -> Iterator[FakeSlack]:
    yield from _running(FakeSlack())


@pytest.fixture(scope="session")
def _receiver() -> Iterator[FakeWebhookReceiver]:
    yield from _running(FakeWebhookReceiver())


@pytest.fixture
def github(_github: FakeGitHub) -> FakeGitHub:
    _github.reset()
    return _github


@pytest.fixture
def gitlab(_gitlab: FakeGitLab) -> FakeGitLab:
    _gitlab.reset()
    return _gitlab


@pytest.fixture
def jenkins(_jenkins: FakeJenkins) -> FakeJenkins:
    _jenkins.reset()
    return _jenkins


@pytest.fixture
def jira(_jira: FakeJira) -> FakeJira:
    _jira.reset()
    return _jira


@pytest.fixture
def slack(_slack: FakeSlack) -> FakeSlack:
    _slack.reset()
    return _slack


@pytest.fixture
def receiver(_receiver: FakeWebhookReceiver) -> FakeWebhookReceiver:
    _receiver.reset()
    return _receiver


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client (for webhooks); vendor tests build their own with base_url and auth."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client
