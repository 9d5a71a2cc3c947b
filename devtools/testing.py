"""Waiting for something to become true, for tests, benchmarks and ``make run``.

:func:`eventually` (sync) and :func:`eventually_async` poll a check until it passes or a deadline
goes by. A check passes when it returns a truthy value (which is returned) without raising
``AssertionError``; on timeout the last assertion (or a ``TimeoutError`` naming what was awaited)
is raised, so the failure says what was last seen rather than only "timed out".

Use them instead of sleeping: a sleep either waits too long or races the thing it waits for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
DEFAULT_INTERVAL = 0.05


def _timed_out(
    what: str,
    timeout: float,
    last: AssertionError | None,
    value: object,
    context: Callable[[], str] | None,
) -> BaseException:
    more = context() if context is not None else ""
    if last is not None:
        return AssertionError(f"{what} did not hold within {timeout}s: {last}{more}")
    return TimeoutError(f"{what} did not hold within {timeout}s (last value: {value!r}){more}")


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    what: str | None = None,
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns a truthy value without raising ``AssertionError``; that value.

    ``context`` is appended to the timeout's message, computed when it fires (a child process's
    last log lines say why a run never ended; read before the wait, they would not)."""
    deadline = time.monotonic() + timeout
    name = what or str(getattr(check, "__name__", "the condition"))
    while True:
        last: AssertionError | None = None
        value: object = None
        try:
            value = check()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _timed_out(name, timeout, last, value, context) from last
        time.sleep(interval)


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str | None = ...,
    context: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def eventually_async(
    check: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str | None = ...,
    context: Callable[[], str] | None = ...,
) -> T: ...


async def eventually_async(
    check: Callable[[], Any],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    what: str | None = None,
    context: Callable[[], str] | None = None,
) -> Any:
    """:func:`eventually` for an event loop: ``check`` may be a coroutine function or a plain one.

    Typed as answering the check's value without ``None``: only a truthy value is returned."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    name = what or str(getattr(check, "__name__", "the condition"))
    while True:
        last: AssertionError | None = None
        value: object = None
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if loop.time() >= deadline:
            raise _timed_out(name, timeout, last, value, context) from last
        await asyncio.sleep(interval)
