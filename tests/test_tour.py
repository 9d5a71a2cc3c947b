"""The README's "A five-minute tour", run as printed against a fresh ``make run``.

The tour's ```bash blocks are cut into commands and run in order by one bash (so ``RUN=…`` and
``H=…`` carry over), as a newcomer pastes them, with nothing exported but what the tour's own
``export`` line says. A ``# → TEXT`` comment after a command (on its own line, continued on the
following ``#   `` lines, or at the end of the command's last line) is what that command prints
on stdout: it must appear there, whitespace ignored, ``…`` standing for anything. Every command
must also exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack import WEBHOOK_SECRET, load_dev_secrets
from tests.temporal_env import free_port
from tests.test_devstack import Devstack, _clean_env, _up

ROOT = Path(__file__).resolve().parent.parent
TOUR_HEADING = "## A five-minute tour"
ARROW = "# →"
ANYTHING = "…"
# What the tour shows for the defaults of `make run`; the test stack has its own ports.
DEFAULT_API_URL = "http://127.0.0.1:8000"
DEMO_URLS = {  # make run's stand-ins: the URL the tour shows, the variable that moves its port
    "http://127.0.0.1:8099": "GANTRY_DEMO_RECEIVER_PORT",
    "http://127.0.0.1:8100": "GANTRY_DEMO_JIRA_PORT",
    "http://127.0.0.1:8101": "GANTRY_DEMO_SLACK_PORT",
}
TOKEN_PLACEHOLDER = "GANTRY_TOKEN=…"
# The example webhook source's secret, which make run also prints as an export line.
SECRET_PLACEHOLDER = f"{WEBHOOK_SECRET}=…"
MARKER = "@@gantry-tour-command"
TOUR_TIMEOUT = 300.0


@dataclass
class Command:
    """One command of the tour: its bash text, where it starts in README.md, what it prints."""

    text: str
    line: int
    expected: list[str] = field(default_factory=list)


def tour_blocks(readme: str) -> Iterator[tuple[int, list[str]]]:
    """The ```bash blocks of the tour section: (line number of the block's first line, lines)."""
    lines = readme.splitlines()
    start = lines.index(TOUR_HEADING)
    block: list[str] | None = None
    for number, line in enumerate(lines[start + 1 :], start + 2):
        if line.startswith("## "):
            break
        if block is None and line.strip() == "```bash":
            block, first = [], number + 1
        elif block is not None and line.strip() == "```":
            yield first, block
            block = None
        elif block is not None:
            block.append(line)


def _complete(lines: list[str]) -> bool:
    """Whether the lines so far are a whole command: no continuation, no open quote."""
    if lines[-1].endswith("\\"):
        return False
    try:
        shlex.split("\n".join(lines), comments=True)
    except ValueError:  # "No closing quotation": a quoted JSON body goes on
        return False
    return True


def _continues_expectation(line: str) -> bool:
    return bool(re.match(r"#\s{2,}\S", line.strip()))


def parse_commands(first_line: int, lines: list[str]) -> list[Command]:
    """A block's commands and their ``# →`` expectations, in order."""
    commands: list[Command] = []
    pending: list[str] = []
    for number, line in enumerate(lines, first_line):
        stripped = line.strip()
        if not pending:
            if stripped.startswith(ARROW):
                assert commands, f"README.md:{number}: an expected output before any command"
                commands[-1].expected.append(stripped[len(ARROW) :].strip())
                continue
            if commands and commands[-1].expected and _continues_expectation(line):
                commands[-1].expected[-1] += " " + stripped.lstrip("#").strip()
                continue
            if not stripped or stripped.startswith("#"):
                continue
            start = number
        pending.append(line)
        if _complete(pending):
            text, _, trailing = "\n".join(pending).rpartition(f" {ARROW} ")
            command = Command(text, start, [trailing.strip()]) if text else Command("\n".join(pending), start)
            commands.append(command)
            pending = []
    assert not pending, f"README.md:{start}: the command never ends (an open quote or a trailing \\)"
    return commands


def tour_commands(readme: str) -> list[Command]:
    return [command for first, lines in tour_blocks(readme) for command in parse_commands(first, lines)]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def shows(output: str, expected: str) -> bool:
    """Whether ``output`` contains ``expected``, whitespace ignored, ``…`` matching anything."""
    position, haystack = 0, _squash(output)
    for piece in _squash(expected).split(ANYTHING):
        found = haystack.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def tour_script(commands: list[Command]) -> str:
    """One bash script: each command, then a marker line with its exit status on stdout and
    stderr; the first failing command ends the script."""
    parts = ["set -o pipefail"]
    for index, command in enumerate(commands):
        parts += [
            command.text,
            f"rc=$?; printf '\\n{MARKER} {index} %d\\n' $rc | tee /dev/stderr",
            '[ "$rc" -eq 0 ] || exit "$rc"',
        ]
    return "\n".join(parts) + "\n"


def outputs_by_command(stdout: str) -> dict[int, tuple[str, int]]:
    """Command index → (its stdout, its exit status), cut at the markers."""
    found: dict[int, tuple[str, int]] = {}
    chunk: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            index, rc = line[len(MARKER) :].split()
            found[int(index)] = ("\n".join(chunk), int(rc))
            chunk = []
        else:
            chunk.append(line)
    return found


# --- the parser and the matcher, on their own ---------------------------------------------------


def test_commands_span_lines_and_carry_their_expected_output() -> None:
    block = [
        'H="Authorization: Bearer $T"',
        "# a comment is no command",
        "curl -s -X POST $URL/v1/things -d '{",
        '  "a": 1}\' | jq .a',
        "# → 1",
        "gantry run x \\",
        "  --wait-for SUCCESS   # → r_…",
        'echo "# → inside quotes"',
        '# → {"error": {"code": "validation_error",',
        '#   "details": [{"pointer": "/a"}]}}',
    ]
    commands = parse_commands(10, block)
    assert [(c.line, c.expected) for c in commands] == [
        (10, []),
        (12, ["1"]),
        (15, ["r_…"]),
        (17, ['{"error": {"code": "validation_error", "details": [{"pointer": "/a"}]}}']),
    ]
    assert commands[1].text.endswith('"a": 1}\' | jq .a')
    assert commands[2].text == "gantry run x \\\n  --wait-for SUCCESS  "


def test_an_unfinished_command_is_reported_with_its_line() -> None:
    with pytest.raises(AssertionError, match=r"README\.md:3: the command never ends"):
        parse_commands(3, ["curl -d '{", '  "a": 1}'])


def test_expected_output_ignores_whitespace_and_skips_ellipses() -> None:
    output = '{"error":{"code":"validation_error","message":"invalid entity","details":[]}}\n'
    assert shows(output, '{"error": {"code": "validation_error", …, "details": []}}')
    assert shows(
        "r_12ab\tdeploy_service\tpayments\tSUCCESS\t2030-01-01T00:00:00.000Z", "r_… payments SUCCESS …"
    )
    assert not shows(output, '"code": "not_found"')
    assert not shows("SUCCESS then FAILURE", "FAILURE … SUCCESS"), "pieces must come in order"


def test_the_tour_is_runnable_text() -> None:
    """Cheap checks of the README itself, so a broken tour fails fast, without a stack."""
    commands = tour_commands((ROOT / "README.md").read_text())
    script = "\n".join(command.text for command in commands)
    assert TOKEN_PLACEHOLDER in script, "the tour starts from the export line make run prints"
    assert len(commands) >= 15 and sum(len(c.expected) for c in commands) >= 12
    syntax = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert syntax.returncode == 0, syntax.stderr
    assert "v42" not in script, "deploy_service wants vX.Y.Z"


# --- the tour against make run --------------------------------------------------------------------


def _tour_env(stack_env: dict[str, str]) -> dict[str, str]:
    """What the newcomer's second shell has: no Gantry variables until the tour exports them."""
    env = {k: v for k, v in stack_env.items() if not k.startswith("GANTRY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _localise(command: Command, api_url: str, token: str, stack_env: dict[str, str]) -> str:
    """The tour's text with the test stack's ports, token and secret in place of make run's."""
    text = command.text.replace(DEFAULT_API_URL, api_url).replace(TOKEN_PLACEHOLDER, f"GANTRY_TOKEN={token}")
    if SECRET_PLACEHOLDER in text:
        secret = load_dev_secrets(Path(stack_env["GANTRY_DATA_DIR"]))[WEBHOOK_SECRET]
        text = text.replace(SECRET_PLACEHOLDER, f"{WEBHOOK_SECRET}={secret}")
    for url, port_variable in DEMO_URLS.items():
        text = text.replace(url, f"http://127.0.0.1:{stack_env[port_variable]}")
    return text


@pytest.mark.slow
def test_the_readme_tour_runs_as_printed(tmp_path: Path) -> None:
    stack_env = {
        **_clean_env(tmp_path),
        "GANTRY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "GANTRY_TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
    }
    commands = tour_commands((ROOT / "README.md").read_text())
    stack = Devstack(stack_env)
    try:
        api_url, token = _up(stack)
        stack.children()  # remembered, so cleanup() reaps them whatever happens
        localised = [Command(_localise(c, api_url, token, stack_env), c.line, c.expected) for c in commands]
        finished = subprocess.run(
            ["bash"],
            input=tour_script(localised),
            cwd=ROOT,
            env=_tour_env(stack_env),
            text=True,
            capture_output=True,
            timeout=TOUR_TIMEOUT,
        )
    finally:
        stack.cleanup()

    outputs = outputs_by_command(finished.stdout)
    problems = []
    for index, command in enumerate(commands):
        if index not in outputs:
            problems.append(f"README.md:{command.line} never ran")
            break
        output, rc = outputs[index]
        if rc != 0:
            problems.append(f"README.md:{command.line} exited {rc}:\n{command.text}\n{output}")
        problems += [
            f"README.md:{command.line} should print {text!r}; it printed:\n{output}"
            for text in command.expected
            if not shows(output, text)
        ]
    assert not problems, "\n\n".join(problems) + f"\n\nstderr:\n{finished.stderr[-4000:]}"
