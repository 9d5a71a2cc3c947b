"""``gantry`` for a developer's day and for CI gates, against a live API: ``check scorecard``,
``check action``, ``report``, ``search`` from a file or stdin, ``--output`` on reads, help with
an example per command and shell completion on SQLite and PostgreSQL; ``approve``, ``cancel``,
``retry``, ``logs --follow`` and ``extend`` against the API and a worker on a Temporal dev server."""

from __future__ import annotations

import argparse
import io
import json
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

import cli
from cli_commands.completion import bash_script, zsh_script
from cli_commands.help import has_example, leaf_parsers
from config import Settings
from devtools.processes import ApiProcess, WorkerProcess, gantry_env
from devtools.testing import eventually
from tests.temporal_env import DevServerProcess, free_port

ADMIN_TOKEN = "cli-day-admin-token"
SERVICE_TOKEN = "cli-day-service-token"


class Live:
    """One live API: the CLI (answering its exit code, stdout and stderr) and plain HTTP."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys
        self.http = httpx.Client(base_url=url, headers=_bearer(ADMIN_TOKEN), timeout=30)
        self.tokens = {"admin": ADMIN_TOKEN}

    def gantry(self, *args: str, user: str = "admin") -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(["--api-url", self.url, "--token", self.tokens[user], *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str, user: str = "admin") -> tuple[int, Any]:
        code, out, _err = self.gantry(*args, user=user)
        return code, json.loads(out)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code < 300, (method, path, response.text)
        return response.json() if response.content else None

    def token_for(self, user: str) -> None:
        self.tokens[user] = self.call("POST", "/v1/tokens", {"user": user})["token"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _serving(server: uvicorn.Server, thread: threading.Thread) -> bool:
    if not thread.is_alive():
        raise RuntimeError("the API's thread ended before it started serving")
    return bool(server.started)


@pytest.fixture
def live(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Live]:
    """The API on this test's database, served by uvicorn on 127.0.0.1, with the day's catalog."""
    from api.app import create_app

    settings = Settings.model_validate(
        {"data_dir": tmp_path, "database_url": database_url, "admin_token": ADMIN_TOKEN}
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: _serving(server, thread), timeout=30, what="the API to start")
    api = Live(f"http://127.0.0.1:{server.config.port}", capsys)
    _seed(api)
    yield api
    api.http.close()
    server.should_exit = True
    thread.join(10)


READINESS: dict[str, Any] = {
    "identifier": "readiness",
    "title": "Production readiness",
    "levels": [{"title": "Basic"}, {"title": "Bronze"}, {"title": "Silver"}, {"title": "Gold"}],
    "rules": [
        {
            "identifier": "has_owner",
            "title": "Has an owning team",
            "level": "Bronze",
            "query": {"combinator": "and", "rules": [{"property": "$team", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "has_repo",
            "title": "Has a repository",
            "level": "Silver",
            "query": {"combinator": "and", "rules": [{"property": "repo", "operator": "isNotEmpty"}]},
        },
        {
            "identifier": "has_on_call",
            "title": "Has an on-call",
            "level": "Gold",
            "query": {"combinator": "and", "rules": [{"property": "on_call", "operator": "isNotEmpty"}]},
        },
    ],
}
DEPLOY: dict[str, Any] = {
    "identifier": "deploy_service",
    "title": "Deploy service",
    "blueprint": "service",
    "trigger": {
        "operation": "DAY-2",
        "condition": {
            "combinator": "and",
            "rules": [{"property": "language", "operator": "=", "value": "go"}],
        },
    },
    "preconditions": {"scorecards": {"readiness": "Silver"}},
    "permissions": {"see": {"roles": ["member"]}},  # executing stays with the owners (the default)
    "steps": [
        {
            "id": "record",
            "uses": "catalog.upsert_entity",
            "with": {"blueprint": "service", "identifier": "{{ entity.identifier }}", "properties": {}},
        }
    ],
}
SERVICES = [
    # go, owned, with a repository: Silver; deploy_service may run on it
    {"identifier": "payments", "title": "Payments", "team": ["payments-team"],
     "properties": {"language": "go", "tier": 1, "repo": "https://git.example.com/payments"}},
    # python: deploy_service's condition does not hold
    {"identifier": "ledger", "title": "Ledger", "team": ["payments-team"],
     "properties": {"language": "python", "tier": 1, "repo": "https://git.example.com/ledger"}},
    # go, owned, no repository: Bronze, below deploy_service's precondition
    {"identifier": "checkout", "title": "Checkout", "team": ["payments-team"],
     "properties": {"language": "go", "tier": 2}},
    # nothing: Basic
    {"identifier": "search", "title": "Search", "properties": {"language": "go", "tier": 3}},
]  # fmt: skip


def _seed(api: Live) -> None:
    for team in ("payments-team", "search-team"):
        api.call("POST", "/v1/teams", {"identifier": team, "title": team})
    for user, team in (("olive", "payments-team"), ("oscar", "search-team")):
        body = {"identifier": user, "email": f"{user}@example.com", "role": "member", "teams": [team]}
        api.call("POST", "/v1/users", body)
        api.token_for(user)
    service = {
        "identifier": "service",
        "title": "Service",
        "schema": {
            "properties": {
                "language": {"type": "string", "enum": ["go", "python"]},
                "tier": {"type": "integer", "minimum": 1, "maximum": 3},
                "repo": {"type": "string", "format": "url"},
                "on_call": {"type": "string"},
            }
        },
        "relations": {"depends_on": {"target": "service", "many": True}},
    }
    deployment = {
        "identifier": "deployment",
        "title": "Deployment",
        "schema": {
            "properties": {
                "version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+\\.[0-9]+$"},
                "status": {"type": "string", "enum": ["IN_PROGRESS", "SUCCEEDED", "FAILED", "ROLLED_BACK"]},
                "attempt": {"type": "integer"},
                "commit": {"type": "string"},
            },
            "required": ["version", "status"],
        },
        "relations": {"service": {"target": "service", "many": False, "required": True}},
    }
    api.call("POST", "/v1/blueprints", service)
    api.call("POST", "/v1/blueprints", deployment)
    api.call("POST", "/v1/blueprints/service/scorecards", READINESS)
    for entity in SERVICES:
        api.call("POST", "/v1/blueprints/service/entities", entity)
    api.call("POST", "/v1/actions", DEPLOY)


# ---- check scorecard ---------------------------------------------------------------------------


def test_check_scorecard_exits_by_level(live: Live) -> None:
    code, out, _ = live.gantry("check", "scorecard", "service", "payments", "--level", "Silver")
    assert (code, out) == (0, "service/payments is Silver on readiness: at or above Silver\n")
    assert live.gantry("check", "scorecard", "service", "payments", "--level", "Bronze")[0] == 0

    code, out, _ = live.gantry(
        "check", "scorecard", "service", "checkout", "--level", "Gold", "--scorecard", "readiness"
    )
    assert code == 1
    assert out.splitlines() == [
        "service/checkout is Bronze on readiness: below Gold; failing rules:",
        "  - has_repo (Silver): Has a repository",
        "  - has_on_call (Gold): Has an on-call",
    ]

    code, answer = live.json("check", "scorecard", "service", "search", "--level", "Silver", "--json")
    assert code == 1
    assert answer == {
        "blueprint": "service",
        "entity": "search",
        "level": "Silver",
        "passed": False,
        "scorecards": [
            {
                "scorecard": "readiness",
                "title": "Production readiness",
                "level": "Basic",
                "required": "Silver",
                "passed": False,
                "failing_rules": [
                    {"identifier": "has_owner", "title": "Has an owning team", "level": "Bronze"},
                    {"identifier": "has_repo", "title": "Has a repository", "level": "Silver"},
                ],
            }
        ],
    }
    code, answer = live.json("check", "scorecard", "service", "payments", "--level", "Silver", "--json")
    assert code == 0 and answer["passed"] is True and answer["scorecards"][0]["failing_rules"] == []


def test_check_scorecard_errors_exit_2(live: Live) -> None:
    code, out, err = live.gantry("check", "scorecard", "service", "nope", "--level", "Silver")
    assert (code, out) == (2, "") and "404" in err and "nope" in err

    code, _, err = live.gantry("check", "scorecard", "service", "payments", "--level", "Platinum")
    assert code == 2
    assert "no scorecard of 'service' has a level 'Platinum' (levels: Basic, Bronze, Silver, Gold)" in err

    code, _, err = live.gantry(
        "check", "scorecard", "service", "payments", "--level", "Silver", "--scorecard", "dora"
    )
    assert code == 2 and "404" in err and "dora" in err

    code, answer = live.json("check", "scorecard", "deployment", "x", "--level", "Silver", "--json")
    assert code == 2 and "404" in answer["error"]  # --json: stdout stays JSON, also for an error

    unreachable = f"http://127.0.0.1:{free_port()}"
    code = cli.main(
        ["--api-url", unreachable, "check", "scorecard", "service", "payments", "--level", "Gold"]
    )
    assert code == 2
    with pytest.raises(SystemExit) as usage:  # --level is required: argparse's usage error is 2 too
        live.gantry("check", "scorecard", "service", "payments")
    assert usage.value.code == 2


# ---- check action ------------------------------------------------------------------------------


def _audit_size(live: Live) -> int:
    return len(list(cli.Gantry(live.http).pages("GET", "/v1/audit-log")))


def test_check_action_answers_without_running(live: Live) -> None:
    audited = _audit_size(live)

    code, out, _ = live.gantry("check", "action", "deploy_service", "--entity", "payments", user="olive")
    assert (code, out) == (0, "yes: you may run deploy_service on payments now\n")

    code, out, _ = live.gantry("check", "action", "deploy_service", "--entity", "payments", user="oscar")
    assert code == 1
    assert out.startswith(
        "no: you may not run deploy_service on payments now:\n  - permission /permissions/execute:"
    )

    code, answer = live.json(
        "check", "action", "deploy_service", "--entity", "ledger", "--json", user="olive"
    )
    assert code == 1
    assert answer["allowed"] is False and answer["needs_approval"] is False
    assert [(p["check"], p["pointer"]) for p in answer["problems"]] == [
        ("condition", "/trigger/condition/rules/0")
    ]

    code, answer = live.json("check", "action", "deploy_service", "--entity", "checkout", "--json")
    assert code == 1
    (problem,) = answer["problems"]
    assert problem["check"] == "preconditions"
    assert problem["pointer"] == "/preconditions/scorecards/readiness"
    assert "needs Silver, entity is Bronze; failing rules: has_repo" in problem["message"]

    code, answer = live.json("check", "action", "deploy_service", "--entity", "payments", "--json")
    assert code == 0
    assert answer == {
        "action": "deploy_service",
        "entity": "payments",
        "allowed": True,
        "needs_approval": False,
        "problems": [],
    }
    # A check is no launch: no run, no audit entry.
    assert live.call("GET", "/v1/runs")["items"] == []
    assert _audit_size(live) == audited


def test_check_action_errors_exit_2(live: Live) -> None:
    code, _, err = live.gantry("check", "action", "deploy_service", "--entity", "nope")
    assert code == 2 and "404" in err and "nope" in err
    code, _, err = live.gantry("check", "action", "deploy_service")  # a DAY-2 action needs an entity
    assert code == 2 and "422" in err and "/entity" in err
    code, answer = live.json("check", "action", "no_such_action", "--entity", "payments", "--json")
    assert code == 2 and "404" in answer["error"]

    # The route itself: the error shape for a bad body, naming the field.
    bad = live.http.post("/v1/actions/deploy_service/check", json={"entity": "payments", "inputs": {}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["pointer"] == "/inputs"


# ---- report ------------------------------------------------------------------------------------


def test_report_upserts_in_one_call(live: Live) -> None:
    report = ("report", "deployment", "payments-v1.44.0")
    code, out, _ = live.gantry(
        *report, "--set", "version=v1.44.0", "--set", "status=IN_PROGRESS", "--set", "attempt=2",
        "--set", "commit=0123456", "--relation", "service=payments", "--team", "payments-team",
        user="olive",
    )  # fmt: skip
    assert (code, out) == (0, "deployment/payments-v1.44.0: created\n")
    written = live.call("GET", "/v1/blueprints/deployment/entities/payments-v1.44.0")
    assert written["properties"] == {
        "version": "v1.44.0",
        "status": "IN_PROGRESS",
        "attempt": 2,  # JSON when it parses
        "commit": "0123456",  # not JSON (a leading zero): the string as given
    }
    assert written["relations"] == {"service": "payments"} and written["team"] == ["payments-team"]

    # The pipeline's second report merges: what it does not name stays.
    code, answer = live.json(*report, "--set", "status=SUCCEEDED", "--json", user="olive")
    assert code == 0 and answer["result"] == "updated"
    assert answer["properties"] == {**written["properties"], "status": "SUCCEEDED"}
    assert answer["relations"] == {"service": "payments"} and answer["team"] == ["payments-team"]

    # Many targets: a relation given twice.
    code, answer = live.json(
        "report", "service", "cart", "--set", "language=go", "--relation", "depends_on=payments",
        "--relation", "depends_on=ledger", "--title", "Cart", "--json",
    )  # fmt: skip
    assert code == 0 and answer["result"] == "created" and answer["title"] == "Cart"
    assert answer["relations"] == {"depends_on": ["payments", "ledger"]}


def test_report_refusals_change_nothing(live: Live) -> None:
    code, _, err = live.gantry(
        "report", "deployment", "d1", "--set", "version=v1", "--set", "status=DONE",
        "--relation", "service=payments",
    )  # fmt: skip
    assert code == 1 and "/properties/version" in err and "/properties/status" in err
    assert live.http.get("/v1/blueprints/deployment/entities/d1").status_code == 404

    # oscar's team does not own payments' deployments
    code, _, err = live.gantry(
        "report", "deployment", "d2", "--set", "version=v1.0.0", "--set", "status=SUCCEEDED",
        "--relation", "service=payments", "--team", "payments-team", user="oscar",
    )  # fmt: skip
    assert code == 1 and "403" in err
    assert live.http.get("/v1/blueprints/deployment/entities/d2").status_code == 404

    code, _, err = live.gantry("report", "deployment", "d3", "--set", "oops")
    assert code == 1 and "key=value" in err


# ---- search and --output -----------------------------------------------------------------------

# The README's own search body, as its curl example sends it.
README_BODY = """{
  "query": {"combinator": "and", "rules": [
    {"property": "$blueprint", "operator": "=", "value": "service"},
    {"property": "tier", "operator": "<=", "value": 1},
    {"property": "$team", "operator": "containsAny", "value": ["payments-team"]}]},
  "sort": [{"property": "title", "order": "asc"}], "limit": 50}"""


def test_search_takes_the_api_body_from_a_file_or_stdin(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = tmp_path / "body.json"
    body.write_text(README_BODY)
    code, out, _ = live.gantry("search", "-f", str(body))
    assert code == 0
    assert out.splitlines() == ["service\tledger\tLedger", "service\tpayments\tPayments"]

    monkeypatch.setattr("sys.stdin", io.StringIO(README_BODY))
    code, found = live.json("search", "-f", "-", "-o", "json")
    assert code == 0 and [e["identifier"] for e in found] == ["ledger", "payments"]
    assert found[0]["scorecards"]["readiness"]["level"] == "Silver"  # whole entities

    # A bare query still works, from the argument or a file; a body's limit caps the answer.
    query = json.loads(README_BODY)["query"]
    code, out, _ = live.gantry("search", json.dumps(query))
    assert code == 0 and len(out.splitlines()) == 2
    limited = {**json.loads(README_BODY), "limit": 1}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(limited)))
    code, found = live.json("search", "-f", "-", "-o", "json")
    assert [e["identifier"] for e in found] == ["ledger"]
    body.write_text(
        json.dumps({"combinator": "and", "rules": [{"property": "tier", "operator": "=", "value": 3}]})
    )
    code, out, _ = live.gantry("search", "--file", str(body), "-o", "yaml")
    assert code == 0 and [e["identifier"] for e in yaml.safe_load(out)] == ["search"]


def test_search_refuses_what_is_no_body(live: Live, tmp_path: Path) -> None:
    code, _, err = live.gantry("search", "{not json")
    assert code == 1 and "the query is not JSON" in err
    code, _, err = live.gantry("search", "[1, 2]")
    assert code == 1 and "must be a JSON object" in err
    with pytest.raises(SystemExit, match="one of them"):
        live.gantry("search", "{}", "-f", str(tmp_path / "x.json"))
    code, _, err = live.gantry("search", '{"query": {"combinator": "and", "rules": []}, "sort": 7}')
    assert code == 1 and "422" in err and "/sort" in err


def test_reads_print_table_json_or_yaml(live: Live) -> None:
    code, out, _ = live.gantry("get", "entities", "service")
    assert code == 0 and out.splitlines()[0] == "payments\tPayments"
    code, listed = live.json("get", "entities", "service", "-o", "json")
    assert [e["identifier"] for e in listed] == ["payments", "ledger", "checkout", "search"]
    code, out, _ = live.gantry("get", "entities", "service", "--output", "yaml")
    assert yaml.safe_load(out) == listed

    code, one = live.json("get", "entity", "service", "payments")  # one object: JSON by default
    assert one["properties"]["repo"] == "https://git.example.com/payments"
    code, out, _ = live.gantry("get", "entity", "service", "payments", "-o", "yaml")
    assert yaml.safe_load(out) == one
    code, out, _ = live.gantry("get", "entity", "service", "payments", "-o", "table")
    rows = dict(line.split("\t", 1) for line in out.splitlines())
    assert rows["identifier"] == "payments" and json.loads(rows["team"]) == ["payments-team"]

    code, out, _ = live.gantry("get", "blueprints", "-o", "json")
    assert {bp["identifier"] for bp in json.loads(out)} == {"service", "deployment"}
    code, runs = live.json("get", "runs", "-o", "json")
    assert code == 0 and runs == []
    code, sources = live.json("sources", "list", "-o", "json")
    assert code == 0 and sources == []
    with pytest.raises(SystemExit):
        live.gantry("get", "blueprints", "-o", "xml")


# ---- help and completion (no API) --------------------------------------------------------------


def _example_commands(parser: argparse.ArgumentParser) -> list[list[str]]:
    """The ``gantry …`` command lines of a help example given as an epilog (continuations
    joined; pipes, ``&&``, redirections and comments cut off). Commands that show a usage-like
    example in their description (with ``[OPTIONAL]`` parts) are not run through the parser."""
    text = (parser.epilog or "example:").split("example:", 1)[1].replace("\\\n", " ")
    lines = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        for stop in ("&&", "<", "|", ";"):
            words = words[: words.index(stop)] if stop in words else words
        if words and words[0] == "gantry":
            lines.append(words[1:])
    return lines


def test_every_command_has_an_example_that_parses() -> None:
    commands = leaf_parsers(cli.parser())
    assert {"gantry check scorecard", "gantry check action", "gantry report", "gantry logs"} <= set(commands)
    missing = [name for name, parser in commands.items() if not has_example(parser)]
    assert not missing, f"commands without an example: {missing}"
    for name, parser in commands.items():
        examples = _example_commands(parser)
        if name.startswith(
            ("gantry check", "gantry report", "gantry approve", "gantry logs", "gantry search")
        ):
            assert examples, name
        for words in examples:
            args = cli.parser().parse_args(words)
            assert callable(args.run), (name, words)  # no positional shadows the command
    assert (
        "example:\n  gantry extend environment pr-1234 expires_at P2D"
        in commands["gantry extend"].format_help()
    )


def _complete(script: str, line: str, tmp_path: Path) -> list[str]:
    """What bash completes for the last word of ``line`` (a trailing space: a new word)."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_gantry_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], cwd=tmp_path, capture_output=True, text=True, check=True)
    return sorted(filter(None, done.stdout.splitlines()))


def test_bash_completion_follows_the_parser(tmp_path: Path) -> None:
    script = bash_script(cli.parser())
    assert _complete(script, "gantry ch", tmp_path) == ["check"]
    assert _complete(script, "gantry check ", tmp_path) == ["--help", "-h", "action", "scorecard"]
    assert _complete(script, "gantry get ", tmp_path)[-5:] == [
        "blueprints",
        "entities",
        "entity",
        "run",
        "runs",
    ]
    assert _complete(script, "gantry get entities service --output ", tmp_path) == ["json", "table", "yaml"]
    assert _complete(script, "gantry --api-url http://x:8000 lo", tmp_path) == ["logs"]
    assert "--follow" in _complete(script, "gantry logs r_1 --", tmp_path)
    assert _complete(script, "gantry completion ", tmp_path)[-2:] == ["bash", "zsh"]
    (tmp_path / "body.json").write_text("{}")
    assert _complete(script, "gantry search -f bo", tmp_path) == ["body.json"]  # a value: files


def test_completion_command_prints_the_scripts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert bash == bash_script(cli.parser()) and "complete -F _gantry_complete gantry" in bash
    assert cli.main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert zsh == zsh_script(cli.parser()) and zsh.endswith(bash)
    assert "bashcompinit" in zsh
    if shutil.which("zsh"):
        script = tmp_path / "gantry.zsh"
        script.write_text(zsh)
        done = subprocess.run(
            ["zsh", "-c", f"source {script} && whence -w _gantry_complete"], capture_output=True, text=True
        )
        assert done.returncode == 0 and "function" in done.stdout


# ---- runs and timers: the API and a worker on a Temporal dev server ---------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API and ``python worker.py`` as processes on a Temporal dev server (SQLite), with an
    approver, an action that waits for their approval, a long one, one that fails at once, and an
    environment whose ``expires_at`` is a timer."""
    tmp = tmp_path_factory.mktemp("cli-day-live")
    api_port = free_port()
    with DevServerProcess(tmp / "temporal.db") as temporal:
        env = gantry_env(
            data_dir=tmp,
            temporal_address=temporal.address,
            admin_token=ADMIN_TOKEN,
            service_token=SERVICE_TOKEN,
            secret_key="cli-day-secret-key",
            webhook_secret="cli-day-webhook-secret",
            api_url=f"http://127.0.0.1:{api_port}",
        )
        api = ApiProcess(env, tmp / "api.log", host="127.0.0.1", port=api_port)
        with api, WorkerProcess(env, tmp / "worker.log"):
            _seed_runs(api.url)
            yield api.url


def _seed_runs(url: str) -> None:
    with httpx.Client(base_url=url, headers=_bearer(ADMIN_TOKEN), timeout=30) as admin:

        def created(path: str, body: dict[str, Any]) -> None:
            answer = admin.post(path, json=body)
            assert answer.status_code == 201, answer.text

        created("/v1/users", {"identifier": "approver", "email": "approver@example.com", "role": "member"})
        closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        actions: dict[str, dict[str, Any]] = {
            "gated": {
                "approval": {
                    "required_approvals": 1,
                    "approvers": {"users": ["approver"]},
                    "timeout": "PT1H",
                },
                "steps": [{"id": "pause", "uses": "sleep", "with": {"duration": "PT1S"}}],
            },
            "long": {"steps": [{"id": "pause", "uses": "sleep", "with": {"duration": "PT10M"}}]},
            "failing": {
                "steps": [
                    {
                        "id": "call",
                        "uses": "http.request",
                        "with": {"url": closed},
                        "retry": {"maximum_attempts": 1},
                    }
                ]
            },
        }
        for name, action in actions.items():
            created(
                "/v1/actions",
                {"identifier": name, "title": name, "trigger": {"operation": "CREATE"}, **action},
            )
        environment = {
            "identifier": "environment",
            "title": "Environment",
            "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}},
            "timers": {"expires_at": {"max_ttl": "P14D", "max_extension": "P7D"}},
        }
        created("/v1/blueprints", environment)
        deadline = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0).isoformat()
        created(
            "/v1/blueprints/environment/entities",
            {"identifier": "pr-1234", "properties": {"expires_at": deadline}},
        )


@pytest.fixture
def day(stack: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Live]:
    api = Live(stack, capsys)
    api.token_for("approver")
    yield api
    api.http.close()


def _launch(day: Live, action: str, status: str) -> str:
    code, out, err = day.gantry("run", action, "--wait-for", status)
    assert code == 0, err
    return out.strip()


def _status(day: Live, run_id: str) -> str:
    return str(day.call("GET", f"/v1/runs/{run_id}")["status"])


@pytest.mark.slow
def test_approve_then_follow_the_log_to_its_end(day: Live) -> None:
    code, answer = day.json("check", "action", "gated", "--json")
    assert code == 0 and answer["allowed"] is True and answer["needs_approval"] is True
    run_id = _launch(day, "gated", "WAITING_FOR_APPROVAL")
    code, _, err = day.gantry("approve", run_id)  # the admin is no approver of it
    assert code == 1 and "403" in err
    assert _status(day, run_id) == "WAITING_FOR_APPROVAL"

    code, out, _ = day.gantry("approve", run_id, "-m", "checked the change log", user="approver")
    assert code == 0
    assert out == f"run {run_id}: approved; the approval is APPROVED (1/1 approvals)\n"

    code, out, err = day.gantry("logs", run_id, "--follow")
    assert code == 0 and err.endswith(f"run {run_id} SUCCESS\n")
    assert out.strip(), "the run's log lines"
    code, lines = day.json("logs", run_id, "-o", "json")
    assert code == 0 and {"id", "at", "level", "message"} <= set(lines[0])
    assert len(lines) == len(out.splitlines()) and all(line["message"] in out for line in lines)
    approval = day.call("GET", f"/v1/runs/{run_id}")["approval"]
    assert "checked the change log" in json.dumps(approval)


@pytest.mark.slow
def test_decline_ends_the_run(day: Live) -> None:
    run_id = _launch(day, "gated", "WAITING_FOR_APPROVAL")
    code, state = day.json(
        "approve", run_id, "--decline", "-m", "not during the freeze", "--json", user="approver"
    )
    assert code == 0 and state["status"] == "DECLINED"
    assert [d.get("comment") for d in state["declines"]] == ["not during the freeze"]
    assert day.gantry("get", "run", run_id, "--wait-for", "DECLINED")[0] == 0
    code, _, err = day.gantry("logs", run_id, "--follow")
    assert code == 1 and err.endswith(f"run {run_id} DECLINED\n")


@pytest.mark.slow
def test_cancel_a_running_run(day: Live) -> None:
    run_id = _launch(day, "long", "IN_PROGRESS")
    code, out, _ = day.gantry("cancel", run_id)
    assert code == 0 and out.startswith(f"run {run_id}: cancel requested")
    assert day.gantry("get", "run", run_id, "--wait-for", "CANCELLED")[0] == 0
    code, _, err = day.gantry("cancel", run_id)  # over already
    assert code == 1 and "409" in err


@pytest.mark.slow
def test_retry_a_failed_run(day: Live) -> None:
    code, out, _ = day.gantry("run", "failing", "--wait-for", "FAILURE")
    run_id = out.strip()
    assert code == 0 and _status(day, run_id) == "FAILURE"
    code, _, err = day.gantry("logs", run_id, "--follow", "-o", "json")
    assert code == 1 and err.endswith(f"run {run_id} FAILURE\n")

    code, answer = day.json("retry", run_id, "--json")
    assert code == 0 and answer["id"] == run_id and answer["status"] == "IN_PROGRESS"
    assert day.gantry("get", "run", run_id, "--wait-for", "FAILURE")[0] == 0

    done = _launch(day, "gated", "WAITING_FOR_APPROVAL")
    day.gantry("approve", done, user="approver")
    assert day.gantry("get", "run", done, "--wait-for", "SUCCESS")[0] == 0
    code, _, err = day.gantry("retry", done)  # nothing to resume
    assert code == 1 and "409" in err


@pytest.mark.slow
def test_extend_a_timer(day: Live) -> None:
    def armed() -> dict[str, Any] | None:
        timers = day.call("GET", "/v1/timers?blueprint=environment")["items"]
        return timers[0] if timers and timers[0].get("armed_at") else None

    before = eventually(armed, timeout=60, what="the timer to be armed")
    code, timer = day.json("extend", "environment", "pr-1234", "expires_at", "P1D", "--json")
    assert code == 0
    moved = datetime.fromisoformat(timer["deadline"]) - datetime.fromisoformat(before["deadline"])
    assert moved == timedelta(days=1)
    entity = day.call("GET", "/v1/blueprints/environment/entities/pr-1234")
    assert datetime.fromisoformat(entity["properties"]["expires_at"]) == datetime.fromisoformat(
        timer["deadline"]
    )

    code, out, _ = day.gantry("extend", "environment", "pr-1234", "expires_at", "PT2H")
    assert code == 0 and out.startswith("environment/pr-1234 expires_at: extended by PT2H, now due ")
    code, _, err = day.gantry("extend", "environment", "pr-1234", "expires_at", "P30D")  # past max_extension
    assert code == 1 and "409" in err
    code, _, err = day.gantry("extend", "environment", "pr-1234", "expires_at", "soon")
    assert code == 1 and "422" in err and "/by" in err


def test_yaml_output_writes_multiline_text_as_blocks() -> None:
    from cli_commands.output import dump

    entity = {
        "runbook": "## Card declines spike\n1. Check the PSP status page.\n",
        "odd": "trailing  \nspace",
    }
    text = dump(entity, "yaml")
    assert "runbook: |\n  ## Card declines spike\n  1. Check the PSP status page.\n" in text
    assert yaml.safe_load(text) == entity
