"""Gantry's own processes as real subprocesses, for tests and benchmarks that kill and restart them.

- :class:`WorkerProcess`: ``python worker.py`` with ``GANTRY_*`` settings in its environment,
  ready once it polls its task queue; ``kill()`` is a SIGKILL (no graceful shutdown, no
  heartbeat flush), as a crashed machine would do.
- :class:`ApiProcess`: the API under uvicorn (``api.app:create_app --factory``), ready once
  ``/readyz`` answers.

Each child logs to a file (``tail()`` shows the end of it in assertion messages), runs in its own
session so a signal reaches it and only it, and gets exactly the ``GANTRY_*`` variables it is
given: the caller's own ``GANTRY_*`` variables are not inherited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


def gantry_env(**settings: Any) -> dict[str, str]:
    """The current environment without its ``GANTRY_*`` variables, plus ``settings`` as
    ``GANTRY_<NAME>`` (``task_queue="q"`` becomes ``GANTRY_TASK_QUEUE=q``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    # The fake receivers listen on 127.0.0.1, which http.request refuses unless allowed.
    settings = {"http_allowed_hosts": "127.0.0.1", **settings}
    env.update({f"GANTRY_{k.upper()}": str(v) for k, v in settings.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class GantryProcess:
    """A child process with a log file, started in its own session."""

    name = "process"

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.env = env
        self.log_file = Path(log_file)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.process is not None, f"the {self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> GantryProcess:
        if self.alive():
            raise RuntimeError(f"the {self.name} is already running")
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                raise RuntimeError(f"the {self.name} exited with code {self.process.returncode}{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"the {self.name} was not ready after {timeout}s{self.tail()}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, nothing flushed."""
        self._signal(signal.SIGKILL)
        self._wait(10.0)

    def stop(self, timeout: float = 25.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout``."""
        self._signal(signal.SIGTERM)
        self._wait(timeout)

    def tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {self.log_file}:\n    " + "\n    ".join(text)

    def log_since_start(self) -> str:
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as log:
            log.seek(getattr(self, "_log_offset", 0))
            return log.read().decode(errors="replace")

    def _signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signum)

    def _wait(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> GantryProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess(GantryProcess):
    """``python worker.py``; ready once it logs that it polls its task queue."""

    name = "worker"

    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "worker.py")]

    def ready(self) -> bool:
        return "worker polling task queue" in self.log_since_start()


class ApiProcess(GantryProcess):
    """The API under uvicorn on ``host:port``; ready once ``/readyz`` answers 200."""

    name = "api"

    def __init__(self, env: dict[str, str], log_file: Path, *, host: str, port: int) -> None:
        super().__init__(env, log_file)
        self.host, self.port = host, port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
