"""The whole example portal, data sources included (a scheduled source needs Temporal for its
schedule), and an initiative (its workflow too) round-trip: apply → plan and export → plan show
no changes."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from tests.portal_as_code.conftest import ADMIN_TOKEN, PORTAL, Portal, serving
from tests.portal_as_code.documents import write_docs
from tests.temporal_env import start_dev_server


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    async with start_dev_server() as env:
        yield env


@pytest.fixture
def full_portal(temporal: WorkflowEnvironment, database_url: str, tmp_path: Path) -> Iterator[Portal]:
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "admin_token": ADMIN_TOKEN,
            "temporal_address": temporal.client.service_client.config.target_host,
            "task_queue": "portal-as-code",
        }
    )
    with serving(settings) as live:
        yield live


INITIATIVE = {
    "identifier": "dora_high",
    "title": "Every service at DORA High",
    "owner": {"teams": ["platform"]},
    "targets": [{"blueprint": "service", "scorecard": "dora", "level": "High"}],
    "deadline": "2030-01-01T00:00:00Z",
    "remind_before": ["P7D"],
}


def test_the_example_portal_with_data_sources_and_an_initiative_round_trips(
    full_portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "portal"
    shutil.copytree(PORTAL, config, ignore=shutil.ignore_patterns("*.md"))
    write_docs(config / "initiatives", "dora_high.yaml", ("Initiative", INITIATIVE))
    assert full_portal.gantry("apply", str(config), "--yes") == 0, capsys.readouterr().err
    assert {s["identifier"] for s in full_portal.get("/v1/data-sources")["items"]} >= {"aws_stacks"}
    assert full_portal.get("/v1/initiatives/dora_high")["deadline"].startswith("2030-01-01")
    capsys.readouterr()
    assert full_portal.gantry("plan", str(config), "--prune") == 0, capsys.readouterr().out

    exported = tmp_path / "exported"
    assert full_portal.gantry("export", str(exported)) == 0
    assert (exported / "data-sources" / "aws_stacks.yaml").is_file()
    assert (exported / "initiatives" / "dora_high.yaml").is_file()
    assert not (exported / "users" / "admin.yaml").exists()
    capsys.readouterr()
    assert full_portal.gantry("plan", str(exported), "--prune") == 0, capsys.readouterr().out
    # The export is stable: written again, byte for byte the same.
    again = tmp_path / "again"
    assert full_portal.gantry("export", str(again)) == 0
    files = sorted(p.relative_to(exported) for p in exported.rglob("*.yaml"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.yaml"))
    assert all((exported / f).read_text() == (again / f).read_text() for f in files)
