"""jq programs evaluated outside the calling process, each under a CPU-time limit.

The jq binding runs a program in C while holding the GIL: evaluated in the API process,
``last(range(1e12))`` froze every request. Here programs run in a small pool of worker
processes (``python -m catalog.sandbox.jq``, JSON lines over pipes). Before each program a
worker arms a CPU-time timer (``ITIMER_PROF``, whose signal ends the process, since nothing
handles it); a runaway program therefore ends its worker, the caller gets :class:`JqTimeout`
for that program alone, and a new worker takes its place. Workers start with an empty
environment (jq's ``env`` and ``$ENV`` would otherwise read the API's secrets) and a memory
ceiling.

Callers: automation trigger conditions (the event relay, in one call per relay batch) and,
later, data-source mappings. Compiling a program to check its syntax is cheap and never runs
it, so :func:`check_jq` does that in process.
"""

from __future__ import annotations

import atexit
import functools
import json
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import jq
import orjson

DEFAULT_TIMEOUT = 1.0  # CPU seconds per program
WORKERS = 2  # processes evaluating at once (per API process)
MIN_SHARE = 64  # a batch is split among the workers only in shares of at least this many jobs
# Extra address space a worker may take beyond what it has after start-up.
MEMORY_HEADROOM = 512 * 1024 * 1024
_ROOT = Path(__file__).resolve().parents[1]


class JqError(Exception):
    """A jq program failed; the message says why."""


class JqCompileError(JqError):
    """The program does not compile."""


class JqRuntimeError(JqError):
    """The program raised an error on this input (``error("...")``, a type error...)."""


class JqTimeout(JqError):
    """The program used more CPU time than its limit (or its worker died): it was stopped."""


def check_jq(program: str) -> None:
    """Raise :class:`JqCompileError` if ``program`` does not compile (nothing is evaluated)."""
    try:
        _compiled(program)
    except ValueError as exc:
        raise JqCompileError(str(exc)) from exc


def run_jq(program: str, value: Any, *, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
    """Every output of ``program`` on ``value``, computed in a worker process with ``timeout``
    CPU seconds. Raises :class:`JqCompileError`, :class:`JqRuntimeError` or :class:`JqTimeout`."""
    result = run_jq_batch([(program, value)], timeout=timeout)[0]
    if isinstance(result, JqError):
        raise result
    return result


def run_jq_batch(
    jobs: Sequence[tuple[str, Any]], *, timeout: float = DEFAULT_TIMEOUT
) -> list[list[Any] | JqError]:
    """Evaluate many (program, value) pairs in one round trip to a worker, each with its own
    ``timeout``. Each result is the program's outputs or the :class:`JqError` it ended with.
    Blocking: call it from a thread (the relay plans its batch in one), never on an event loop."""
    if not jobs:
        return []
    if len(jobs) >= 2 * MIN_SHARE:
        # A big batch is shared among the workers (each evaluates on its own core).
        size = -(-len(jobs) // min(WORKERS, len(jobs) // MIN_SHARE))
        shares = [jobs[start : start + size] for start in range(0, len(jobs), size)]
        parts = _SHARING.map(lambda share: _run_share(share, timeout), shares)
        return [result for part in parts for result in part]
    return _run_share(jobs, timeout)


def _run_share(jobs: Sequence[tuple[str, Any]], timeout: float) -> list[list[Any] | JqError]:
    outcomes = _POOL.call(_encode({"timeout": timeout, "jobs": list(jobs)}) + b"\n")
    if outcomes is None:  # the worker died: a program ran out of CPU time (or memory)
        if len(jobs) == 1:
            return [JqTimeout(f"jq program stopped: it used more than {timeout:g} s of CPU time")]
        # Find which one by running each alone; the others keep their results.
        return [_run_share([job], timeout)[0] for job in jobs]
    return [_result(outcome) for outcome in outcomes]


def _encode(value: Any) -> bytes:
    """JSON with orjson (a page of items encodes and decodes many times faster than with
    ``json``); what orjson refuses (integers beyond 64 bits) falls back to ``json``."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, default=str).encode()


def _result(outcome: dict[str, Any]) -> list[Any] | JqError:
    if "outputs" in outcome:
        outputs: list[Any] = outcome["outputs"]
        return outputs
    message = str(outcome.get("error") or "jq failed")
    return JqCompileError(message) if outcome.get("compile") else JqRuntimeError(message)


class _Worker:
    """One ``python -m catalog.sandbox.jq`` process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catalog.sandbox.jq"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PYTHONPATH": str(_ROOT)},  # and nothing else: no secrets for jq's `env`
            cwd=_ROOT,
        )

    def call(self, request: bytes) -> list[dict[str, Any]] | None:
        """The outcomes, or None if the process died on the way."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(request)
            stdin.flush()
            line = stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            self.close()
            return None
        outcomes: list[dict[str, Any]] = orjson.loads(line)
        return outcomes

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class _Pool:
    """At most ``WORKERS`` workers busy at once; idle ones are reused, dead ones replaced."""

    def __init__(self, size: int) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def call(self, request: bytes) -> list[dict[str, Any]] | None:
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            worker = worker or _Worker()
            outcomes = worker.call(request)
            if outcomes is not None:
                with self._lock:
                    self._idle.append(worker)
            return outcomes

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_POOL = _Pool(WORKERS)
atexit.register(_POOL.close)
# Threads that hand a big batch's shares to the workers at once.
_SHARING = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="jq-share")
atexit.register(_SHARING.shutdown)


def shutdown() -> None:
    """Stop the idle worker processes (new ones start on the next call)."""
    _POOL.close()


# --- in the worker process -------------------------------------------------------------------


def _serve(requests: IO[bytes], replies: IO[str]) -> None:
    _limit_memory()
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the CPU timer's signal ends the process
    for line in requests:
        request = json.loads(line) if b"NaN" in line or b"Infinity" in line else orjson.loads(line)
        outcomes = [_evaluate(program, value, request["timeout"]) for program, value in request["jobs"]]
        replies.write(_encode(outcomes).decode() + "\n")
        replies.flush()


def _limit_memory() -> None:
    with open("/proc/self/statm") as statm:  # pages of address space in use now
        used = int(statm.read().split()[0]) * resource.getpagesize()
    limit = used + MEMORY_HEADROOM
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _evaluate(program: str, value: Any, timeout: float) -> dict[str, Any]:
    try:
        compiled = _compiled(program)
    except ValueError as exc:
        return {"error": str(exc), "compile": True}
    signal.setitimer(signal.ITIMER_PROF, timeout)
    try:
        return {"outputs": compiled.input_value(value).all()}
    except (ValueError, MemoryError) as exc:
        return {"error": str(exc) or exc.__class__.__name__}
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


@functools.lru_cache(maxsize=1024)
def _compiled(program: str) -> Any:
    return jq.compile(program)


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout)
