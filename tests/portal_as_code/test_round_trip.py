"""apply, plan, export: the example portal round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.portal_as_code.conftest import Portal


def test_apply_then_plan_shows_no_changes(
    example: Portal, portal_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert example.gantry("plan", str(portal_dir)) == 0
    assert "No changes." in capsys.readouterr().out


def test_export_then_plan_shows_no_changes(
    example: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    assert example.gantry("export", str(out), "--entities") == 0
    capsys.readouterr()
    assert example.gantry("plan", str(out), "--prune", "--prune-entities") == 0, capsys.readouterr().out
