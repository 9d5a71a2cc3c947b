"""Group commit for the worker's reports to the catalog.

A thousand timers expiring in the same second each report to the catalog. One request and one
transaction each would queue behind the API's database; instead, reports that arrive while a
request is in flight wait for it and then go together in the next one. A lone report goes at
once (no timer, no added latency); under load a request carries up to ``max_batch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Item, Answer]):
    """``await submit(item)`` → the answer ``send`` gave for it. ``send`` takes a list of items
    and returns one answer (or exception, raised to that item's caller) per item, in order; if
    ``send`` itself raises, every item of that batch gets the error."""

    def __init__(
        self, send: Callable[[list[Item]], Awaitable[list[Answer | BaseException]]], *, max_batch: int = 200
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            batch = [(item, future) for item, future in batch if not future.done()]  # cancelled callers
            if not batch:
                continue
            try:
                answers = await self._send([item for item, _ in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(answers)} answers for {len(batch)} items")
            except Exception as exc:  # the whole request failed: each caller sees why
                answers = [exc] * len(batch)
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
