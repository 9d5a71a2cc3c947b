"""plan and apply against a live API: exit codes, the diff, validation before any change,
dependency order, a failure in the middle and the re-run, prune, and refusing without --yes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.portal_as_code.conftest import Portal
from tests.portal_as_code.documents import action, blueprint, team, write_docs


def test_plan_exit_codes_and_field_level_diff(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    write_docs(config, "all.yaml", team("sre"), blueprint("app"))
    assert portal.gantry("plan", str(config)) == 2
    out = capsys.readouterr().out
    assert "+ Team sre: create" in out and "+ Blueprint app: create" in out
    assert "Plan: 2 to create, 0 to update, 0 to delete." in out
    assert portal.call("GET", "/v1/teams/sre").status_code == 404  # plan changes nothing

    assert portal.gantry("apply", str(config), "--yes") == 0
    capsys.readouterr()
    assert portal.gantry("plan", str(config)) == 0
    assert "No changes." in capsys.readouterr().out

    changed = blueprint("app")
    changed[1]["schema"]["properties"]["tier"]["enum"] = ["a", "b", "c"]
    write_docs(config, "all.yaml", team("sre", "Site reliability"), changed)
    assert portal.gantry("plan", str(config)) == 2
    out = capsys.readouterr().out
    assert "~ Blueprint app: update" in out
    assert "~ spec.schema.properties.tier.enum: [a, b] -> [a, b, c]" in out
    assert '~ spec.title: "Sre" -> "Site reliability"' in out

    assert portal.gantry("plan", str(config), "--json") == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["summary"] == {"create": 0, "update": 2, "delete": 0}
    app = next(c for c in answer["changes"] if c["key"] == "app")
    assert app["changes"] == [
        {
            "path": "spec.schema.properties.tier.enum",
            "op": "~",
            "before": ["a", "b"],
            "after": ["a", "b", "c"],
        }
    ]


def test_invalid_yaml_unknown_kinds_and_fields_name_file_document_and_field(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.yaml").write_text("kind: Team\nspec: {identifier: [unclosed\n")
    assert portal.gantry("plan", str(bad)) == 1
    assert "broken.yaml: not valid YAML" in capsys.readouterr().err

    (bad / "broken.yaml").unlink()
    write_docs(bad, "teams.yaml", team("ok"), ("Team", {"identifier": "x", "title": "X", "colour": "red"}))
    assert portal.gantry("plan", str(bad)) == 1
    err = capsys.readouterr().err
    assert "teams.yaml (document 1): spec.colour: unknown field of Team" in err

    write_docs(bad, "teams.yaml", team("ok"), ("Squad", {"identifier": "x"}))
    assert portal.gantry("apply", str(bad), "--yes") == 1
    assert "teams.yaml (document 1): kind: unknown kind 'Squad'" in capsys.readouterr().err

    # A nested field only the server knows: its dry run refuses it, before anything changes.
    relation = {"target": "app", "colour": "red"}
    write_docs(bad, "teams.yaml", team("ok"), blueprint("app", relations={"self": relation}))
    assert portal.gantry("apply", str(bad), "--yes") == 1
    err = capsys.readouterr().err
    assert "teams.yaml (document 1): Blueprint app: 422" in err and "/relations/self/colour" in err
    assert portal.call("GET", "/v1/teams/ok").status_code == 404


def test_a_new_blueprint_a_relation_to_it_and_an_action_on_it_apply_in_one_go(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    relation = {"region": {"target": "region", "title": "Region", "many": False, "required": False}}
    automation = {
        "identifier": "touch_on_create",
        "title": "Touch on create",
        "trigger": {"event": "ENTITY_CREATED", "blueprint": "app"},
        "invoke": {"action": "touch_app"},
    }
    scorecard = {
        "identifier": "tiered",
        "title": "Tiered",
        "blueprint": "app",
        "levels": [{"title": "None"}, {"title": "Tiered"}],
        "rules": [
            {
                "identifier": "has_tier",
                "level": "Tiered",
                "query": {"combinator": "and", "rules": [{"property": "tier", "operator": "isNotEmpty"}]},
            }
        ],
    }
    # Files in an order apply must not follow: the automation first, the target blueprint last.
    write_docs(config, "a.yaml", ("Automation", automation), action("touch_app", on="app"))
    write_docs(config, "b.yaml", ("Scorecard", scorecard), blueprint("app", relations=relation))
    write_docs(config, "c.yaml", blueprint("region"))
    assert portal.gantry("apply", str(config), "--yes") == 0
    out = capsys.readouterr().out
    done = [line for line in out.splitlines() if line.endswith(("created", "applied", "next)"))]
    assert done == [
        "Blueprint app: created (relations next)",
        "Blueprint region: created",
        "Blueprint app: relations applied",
        "Scorecard app/tiered: created",
        "Action touch_app: created",
        "Automation touch_on_create: created",
    ]
    assert portal.get("/v1/blueprints/app")["relations"]["region"]["target"] == "region"
    assert portal.gantry("plan", str(config)) == 0


def test_a_failure_stops_at_the_object_and_a_rerun_continues(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    # The action is on a blueprint this apply creates, so it is checked when applied: its
    # unknown step kind fails there, after the team and the blueprint were created.
    write_docs(
        config, "a.yaml", team("sre"), blueprint("app"), action("touch_app", "app", uses="no.such_step")
    )
    write_docs(
        config,
        "b.yaml",
        (
            "Automation",
            {
                "identifier": "later",
                "title": "Later",
                "trigger": {"event": "ENTITY_CREATED", "blueprint": "app"},
                "invoke": {"action": "touch_app"},
            },
        ),
    )
    assert portal.gantry("apply", str(config), "--yes") == 1
    captured = capsys.readouterr()
    assert "Action touch_app: create (checked when applied" in captured.out
    assert "error: Action touch_app (" in captured.err and "a.yaml (document 2)" in captured.err
    assert "/steps/0/uses" in captured.err
    assert portal.call("GET", "/v1/teams/sre").status_code == 200
    assert portal.call("GET", "/v1/blueprints/app").status_code == 200
    assert portal.call("GET", "/v1/automations/later").status_code == 404  # later objects untouched

    write_docs(config, "a.yaml", team("sre"), blueprint("app"), action("touch_app", "app"))
    assert portal.gantry("apply", str(config), "--yes") == 0
    out = capsys.readouterr().out
    assert "Team sre" not in out and "Blueprint app" not in out
    assert "Action touch_app: created" in out and "Automation later: created" in out
    assert portal.gantry("plan", str(config)) == 0


def test_prune_deletes_only_with_the_flag(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    entity = {"blueprint": "app", "identifier": "web", "properties": {"tier": "a"}}
    write_docs(config, "a.yaml", team("sre"), team("dba"), blueprint("app"), ("Entity", entity))
    write_docs(config, "b.yaml", ("Entity", {**entity, "identifier": "api"}))
    assert portal.gantry("apply", str(config), "--yes") == 0
    write_docs(config, "a.yaml", team("sre"), blueprint("app"), ("Entity", entity))
    (config / "b.yaml").unlink()
    capsys.readouterr()

    assert portal.gantry("plan", str(config)) == 0  # without --prune nothing is deleted
    assert portal.gantry("plan", str(config), "--prune") == 2
    out = capsys.readouterr().out
    assert "- Team dba: delete" in out and "Entity" not in out
    assert "admin" not in out  # the bootstrap admin is not configuration

    assert portal.gantry("apply", str(config), "--prune", "--yes") == 0
    assert portal.call("GET", "/v1/teams/dba").status_code == 404
    assert portal.call("GET", "/v1/blueprints/app/entities/api").status_code == 200  # entities stay
    assert portal.call("GET", "/v1/users/admin").status_code == 200

    assert portal.gantry("apply", str(config), "--prune", "--prune-entities", "--yes") == 0
    assert portal.call("GET", "/v1/blueprints/app/entities/api").status_code == 404
    assert portal.call("GET", "/v1/blueprints/app/entities/web").status_code == 200


def test_apply_refuses_without_yes_when_stdin_is_not_a_terminal(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    write_docs(config, "a.yaml", team("sre"))
    assert portal.gantry("apply", str(config)) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert portal.call("GET", "/v1/teams/sre").status_code == 404
