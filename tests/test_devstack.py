"""``make run`` (devstack.py): brings the stack up on free ports, reuses its data, stops cleanly."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

import devstack
from tests.temporal_env import DevServerProcess, free_port
from worker import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent


def test_dev_secrets_are_generated_once_and_reused(tmp_path: Path) -> None:
    first = devstack.load_dev_secrets(tmp_path)
    assert set(first) == set(devstack.GENERATED_SECRETS) and all(first.values())
    assert first["GANTRY_ADMIN_TOKEN"] != first["GANTRY_SERVICE_TOKEN"]
    assert devstack.load_dev_secrets(tmp_path) == first
    assert oct((tmp_path / "dev-secrets.env").stat().st_mode & 0o777) == "0o600"


def test_variables_set_by_the_user_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANTRY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GANTRY_ADMIN_TOKEN", "mine")
    monkeypatch.setenv("GANTRY_API_PORT", "9001")
    monkeypatch.delenv("GANTRY_API_URL", raising=False)
    env = devstack.stack_environment()
    assert env["GANTRY_ADMIN_TOKEN"] == "mine"
    assert env["GANTRY_SERVICE_TOKEN"] == devstack.load_dev_secrets(tmp_path)["GANTRY_SERVICE_TOKEN"]
    assert env["GANTRY_API_URL"] == "http://127.0.0.1:9001"


class Devstack:
    """``python devstack.py`` as `make run` starts it, with its output read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "devstack.py")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen_children: set[int] = set()

    def _read(self) -> None:
        assert self.process.stdout
        for line in self.process.stdout:
            self.output.append(line)
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, f"devstack exited:\n{''.join(self.output)}"
                continue
            if text in line:
                return line
        raise AssertionError(f"no {text!r} after {timeout}s:\n{''.join(self.output)}")

    def children(self) -> dict[int, str]:
        """The live child processes, pid → command line."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and fields[0] != "Z":
                    cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found[int(stat.parent.name)] = cmdline
            except (OSError, IndexError, ValueError):
                continue
        self.seen_children |= set(found)
        return found

    def wait(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout)

    def cleanup(self) -> None:
        """Leave nothing running even when a test failed half-way."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for pid in self.seen_children:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    api_port = free_port()
    return {
        **env,
        "GANTRY_DATA_DIR": str(tmp_path_factory.mktemp("devstack") / ".gantry"),
        "GANTRY_API_PORT": str(api_port),
        "GANTRY_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "GANTRY_TEMPORAL_UI_URL": f"http://127.0.0.1:{free_port()}",
    }


@pytest.fixture
def start_devstack(stack_env: dict[str, str]) -> Iterator[type[Devstack]]:
    started: list[Devstack] = []

    class Tracked(Devstack):
        def __init__(self, env: dict[str, str]) -> None:
            super().__init__(env)
            started.append(self)

    yield Tracked
    for stack in started:
        stack.cleanup()


def _up(stack: Devstack) -> tuple[str, str]:
    """Wait for the banner; (API URL, admin token)."""
    token = stack.wait_for("export GANTRY_TOKEN=").strip().split("=", 1)[1]
    api_url = next(line for line in stack.output if "export GANTRY_API_URL=" in line).strip().split("=", 1)[1]
    return api_url, token


async def _search_attributes(address: str) -> set[str]:
    client = await Client.connect(address)
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    return set(answer.custom_attributes)


@pytest.mark.slow
def test_make_run_serves_the_portal_and_ctrl_c_stops_everything(
    start_devstack: type[Devstack], stack_env: dict[str, str]
) -> None:
    stack = start_devstack(stack_env)
    api_url, token = _up(stack)
    assert "/logs/*.log" in "".join(stack.output)
    assert f"{api_url}/docs" in "".join(stack.output)

    children = stack.children()
    commands = " | ".join(children.values())
    assert len(children) == 3, commands
    assert "server start-dev" in commands and "uvicorn" in commands and "worker.py" in commands

    assert httpx.get(f"{api_url}/readyz").status_code == 200
    auth = {"Authorization": f"Bearer {token}"}
    payments = httpx.get(f"{api_url}/v1/blueprints/service/entities/payments", headers=auth)
    assert payments.status_code == 200, payments.text
    assert set(SEARCH_ATTRIBUTES) <= asyncio.run(_search_attributes(stack_env["GANTRY_TEMPORAL_ADDRESS"]))

    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, "".join(stack.output)
    assert not [pid for pid in children if _alive(pid)], "a child outlived devstack"
    data_dir = Path(stack_env["GANTRY_DATA_DIR"])
    assert {p.name for p in (data_dir / "logs").iterdir()} == {"temporal.log", "api.log", "worker.log"}
    assert (data_dir / "temporal.db").exists()


@pytest.mark.slow
def test_second_run_reuses_data_and_a_dying_child_stops_the_rest(
    start_devstack: type[Devstack], stack_env: dict[str, str]
) -> None:
    secrets_file = Path(stack_env["GANTRY_DATA_DIR"]) / "dev-secrets.env"
    first_token = (
        secrets_file.read_text().split("GANTRY_ADMIN_TOKEN=")[1].split()[0] if secrets_file.exists() else None
    )

    stack = start_devstack(stack_env)
    api_url, token = _up(stack)
    if first_token:
        assert token == first_token, "the dev admin token is reused across runs"
    assert "applied the example portal" in "".join(stack.output)
    entities = httpx.get(
        f"{api_url}/v1/blueprints/service/entities", headers={"Authorization": f"Bearer {token}"}
    )
    assert len(entities.json()["items"]) == 7  # applied twice, still one of each

    children = stack.children()
    worker = next(pid for pid, cmd in children.items() if "worker.py" in cmd)
    os.kill(worker, signal.SIGKILL)
    assert stack.wait() == 1
    output = "".join(stack.output)
    assert "worker exited unexpectedly" in output
    assert not [pid for pid in children if _alive(pid)], "a child outlived devstack"


@pytest.mark.slow
def test_an_answering_temporal_server_is_reused(start_devstack: type[Devstack], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    with DevServerProcess(tmp_path / "temporal.db") as temporal:
        env |= {
            "GANTRY_DATA_DIR": str(tmp_path / ".gantry"),
            "GANTRY_API_PORT": str(free_port()),
            "GANTRY_TEMPORAL_ADDRESS": temporal.address,
        }
        stack = start_devstack(env)
        _up(stack)
        assert f"reusing the Temporal server at {temporal.address}" in "".join(stack.output)
        children = stack.children()
        assert len(children) == 2 and not any("start-dev" in cmd for cmd in children.values())
        stack.process.send_signal(signal.SIGTERM)
        assert stack.wait() == 0
        assert temporal.process and temporal.process.poll() is None, "a server it did not start is left alone"
