"""Child processes for ``make run`` (devstack.py), tests and benchmarks: one manager for all.

:class:`ChildProcess` starts a command with a given environment, appends its output to a log
file, waits until it is ready (a port answers, a URL says 200, a log line appears) and stops it
with SIGTERM, then SIGKILL after a grace period. Each child runs in its own session, so a signal
reaches it and its children only, and Ctrl-C on the parent reaches only the parent.

Gantry's own processes:

- :class:`WorkerProcess`: ``python worker.py``, ready once it polls its task queue.
- :class:`ApiProcess`: the API under uvicorn, ready once ``/readyz`` answers 200.
- :class:`DevServerProcess`: ``temporal server start-dev`` on a database file and a fixed port,
  so workflows survive a restart and clients reconnect to the same address.

:func:`gantry_env` builds a child's environment: ``GANTRY_*`` settings given explicitly, none
inherited from the caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import httpx

from devtools.testing import eventually

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 25.0  # longer than the worker's graceful shutdown


def free_port() -> int:
    """A local TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def url_answers(url: str) -> bool:
    """True when a GET of ``url`` answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_port(host: str, port: int, timeout: float = READY_TIMEOUT) -> None:
    eventually(lambda: port_answers(host, port), timeout=timeout, interval=0.1, what=f"{host}:{port} answers")


def gantry_env(**settings: Any) -> dict[str, str]:
    """The current environment without its ``GANTRY_*`` variables, plus ``settings`` as
    ``GANTRY_<NAME>`` (``task_queue="q"`` becomes ``GANTRY_TASK_QUEUE=q``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
    # The fake receivers listen on 127.0.0.1, which http.request refuses unless allowed.
    settings = {"http_allowed_hosts": "127.0.0.1", **settings}
    env.update({f"GANTRY_{k.upper()}": str(v) for k, v in settings.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChildProcess:
    """A command run as a child in its own session, logging to ``log_file``.

    Subclasses override :meth:`command` and :meth:`ready`; plain uses pass ``argv`` and an
    optional ``ready`` check (without one the child is ready as soon as it is started).
    """

    name = "process"

    def __init__(
        self,
        argv: list[str] | None = None,
        *,
        log_file: Path,
        env: dict[str, str] | None = None,
        name: str | None = None,
        ready: Callable[[], bool] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.argv = argv or []
        self.env = env
        self.log_file = Path(log_file)
        self.cwd = cwd
        self._ready = ready
        if name:
            self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        return self.argv

    def ready(self) -> bool:
        return self._ready() if self._ready else True

    @property
    def pid(self) -> int:
        assert self.process is not None, f"the {self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self) -> Self:
        """Start the child without waiting for it to be ready."""
        if self.alive():
            raise RuntimeError(f"the {self.name} is already running")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            started = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            log.write(f"\n--- {started} {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` with the end of the log if the child has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the {self.name} exited with code {self.process.returncode}{self.tail()}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Self:
        """Wait until :meth:`ready`; a child that exits first fails at once, one that is still
        not ready after ``timeout`` is killed."""

        def started() -> bool:
            self.check_alive()
            return self.ready()

        try:
            eventually(started, timeout=timeout, what=f"the {self.name} is ready")
        except TimeoutError:
            self.kill()
            raise TimeoutError(f"the {self.name} was not ready after {timeout}s{self.tail()}") from None
        return self

    def start(self, timeout: float = READY_TIMEOUT) -> Self:
        return self.launch().wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, nothing flushed, as a crashed machine would do."""
        self._signal(signal.SIGKILL)
        self._wait(10.0)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout``; False if it had to be killed."""
        self._signal(signal.SIGTERM)
        return self._wait(timeout)

    def tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {self.log_file}:\n    " + "\n    ".join(text)

    def log_since_start(self) -> str:
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def _signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def _wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess(ChildProcess):
    """``python worker.py``; ready once it logs that it polls its task queue."""

    name = "worker"
    env: dict[str, str]  # always given: a restart reuses it

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        super().__init__(log_file=log_file, env=env)

    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "worker.py")]

    def ready(self) -> bool:
        return "worker polling task queue" in self.log_since_start()


class ApiProcess(ChildProcess):
    """The API under uvicorn on ``host:port``; ready once ``/readyz`` answers 200."""

    name = "api"

    def __init__(self, env: dict[str, str], log_file: Path, *, host: str, port: int) -> None:
        super().__init__(log_file=log_file, env=env)
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
        return url_answers(f"{self.url}/readyz")


class DevServerProcess(ChildProcess):
    """``temporal server start-dev`` that a test can stop, kill and restart.

    The database file and the gRPC port stay the same across restarts, so workflows survive
    and clients reconnect to the same ``address``.
    """

    name = "temporal"

    def __init__(self, db_file: Path, *, port: int | None = None, log_file: Path | None = None) -> None:
        self.db_file = Path(db_file)
        self.port = port or free_port()
        super().__init__(log_file=log_file or self.db_file.with_suffix(".log"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        from devtools.temporal import dev_server_command

        return dev_server_command(
            "--db-filename", str(self.db_file), "--ip", "127.0.0.1", "--port", str(self.port)
        )

    def ready(self) -> bool:
        return port_answers("127.0.0.1", self.port)

    def stop(self, timeout: float = 10.0) -> bool:
        return super().stop(timeout)

    def restart(self, timeout: float = READY_TIMEOUT) -> Self:
        self.stop()
        return self.start(timeout)
