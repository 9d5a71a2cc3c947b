"""Group commit: reports made while a request is in flight go together in the next one."""

from __future__ import annotations

import asyncio

import pytest

from activities.batching import GroupCommit


class Sender:
    """Answers each item with its double; records each batch it was sent. With ``hold`` a
    request stays in flight until the test sets ``release`` (``sent`` says one is in flight)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail_batch: Exception | None = None
        self.sent = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        self.sent.set()
        await self.release.wait()
        if self.fail_batch is not None:
            raise self.fail_batch
        return [ValueError(f"no {i}") if i < 0 else i * 2 for i in items]


async def test_a_lone_item_goes_at_once_and_a_crowd_goes_together() -> None:
    sender = Sender()
    batcher: GroupCommit[int, int] = GroupCommit(sender, max_batch=50)

    assert await batcher.submit(1) == 2
    assert sender.batches == [[1]]

    answers = await asyncio.gather(*(batcher.submit(i) for i in range(120)))

    assert answers == [i * 2 for i in range(120)]
    assert [len(b) for b in sender.batches[1:]] == [50, 50, 20]  # in order, at most max_batch
    assert [i for b in sender.batches[1:] for i in b] == list(range(120))


async def test_items_arriving_during_a_request_wait_for_the_next() -> None:
    sender = Sender(hold=True)
    batcher: GroupCommit[int, int] = GroupCommit(sender)
    first = asyncio.create_task(batcher.submit(1))
    await sender.sent.wait()  # the first request is in flight
    # gather starts the submissions as tasks, which queue their items before the held request
    # (released only now) returns: tasks run in the order they were scheduled.
    later = asyncio.gather(*(batcher.submit(i) for i in range(2, 6)))
    sender.release.set()

    assert await first == 2 and await later == [4, 6, 8, 10]
    assert sender.batches == [[1], [2, 3, 4, 5]]


async def test_errors_reach_their_own_callers() -> None:
    sender = Sender()
    batcher: GroupCommit[int, int] = GroupCommit(sender)

    results = await asyncio.gather(batcher.submit(1), batcher.submit(-1), return_exceptions=True)
    assert results[0] == 2 and isinstance(results[1], ValueError)

    sender.fail_batch = ConnectionError("API down")
    with pytest.raises(ConnectionError):
        await batcher.submit(3)
    sender.fail_batch = None
    assert await batcher.submit(4) == 8  # the batcher carries on


async def test_a_cancelled_caller_is_left_out() -> None:
    sender = Sender(hold=True)
    batcher: GroupCommit[int, int] = GroupCommit(sender)
    first = asyncio.create_task(batcher.submit(1))
    await sender.sent.wait()  # the first request is in flight
    gone = asyncio.create_task(batcher.submit(2))
    kept = asyncio.create_task(batcher.submit(3))
    # One turn of the loop, not a timed wait (tasks start in creation order): both have queued
    # their items behind the one in flight.
    await asyncio.sleep(0)
    gone.cancel()
    sender.release.set()

    assert await first == 2 and await kept == 6
    assert sender.batches == [[1], [3]]
