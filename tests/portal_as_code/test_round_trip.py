"""apply, plan, export: the example portal round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.portal_as_code.conftest import Portal
from tests.portal_as_code.documents import action, blueprint, team, write_docs


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


def test_permissions_moderators_approvals_and_timer_policies_round_trip(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    users = [
        ("User", {"identifier": name, "email": f"{name}@example.com", "teams": ["sre"]})
        for name in ("ann", "ben")
    ]
    app = blueprint(
        "app",
        moderators={"teams": ["sre"]},
        permissions={
            "update": {"roles": ["member"], "owned_by_team": True},
            "update_properties": {"tier": {"teams": ["sre"]}},
        },
        timers={"expires_at": {"max_ttl": "P14D", "max_extension": "P7D", "remind_before": ["PT12H"]}},
    )
    app[1]["schema"]["properties"]["expires_at"] = {"type": "string", "format": "timer"}
    gated = action("touch_app", "app")
    gated[1]["permissions"] = {"execute": {"owned_by_team": True}, "see": {"roles": ["member", "viewer"]}}
    gated[1]["approval"] = {
        "required_approvals": 1,
        "approvers": {"teams": ["sre"]},
        "allow_self_approval": False,
        "timeout": "PT4H",
        "on_timeout": "ESCALATE",
        "escalation_approvers": {"users": ["ben"]},
        "escalation_timeout": "PT1H",
    }
    write_docs(config, "all.yaml", team("sre"), *users, app, gated)
    assert portal.gantry("apply", str(config), "--yes") == 0, capsys.readouterr().err
    capsys.readouterr()
    assert portal.gantry("plan", str(config)) == 0, capsys.readouterr().out

    exported = tmp_path / "exported"
    assert portal.gantry("export", str(exported)) == 0
    assert portal.gantry("plan", str(exported), "--prune") == 0, capsys.readouterr().out
    written = (exported / "blueprints" / "app.yaml").read_text()
    assert "created_at" not in written and "updated_by" not in written
    assert "owned_by_team: true" in written and "max_ttl: P14D" in written
