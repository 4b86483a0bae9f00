"""A consumer stuck on a batch fails its liveness within the stall setting; an idle one, or
one whose messages keep moving (retries in an outage included), never does. Without a broker:
records built by hand, a fake monotonic clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from services.runtime.consumer import Inbound, Progress
from tests.unit.runtime.test_consumer_policy import RecordingConsumer, record

pytestmark = pytest.mark.unit

STALL_S = 120.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_consumer_is_never_stalled_however_long_nothing_comes() -> None:
    clock = FakeMonotonic()
    progress = Progress(clock)
    clock.now += 10 * STALL_S
    assert progress.stalled(STALL_S) is False


def test_a_batch_in_hand_without_progress_is_stalled_only_past_the_setting() -> None:
    clock = FakeMonotonic()
    progress = Progress(clock)
    progress.begin()
    clock.now += STALL_S
    assert progress.stalled(STALL_S) is False
    clock.now += 1
    assert progress.stalled(STALL_S) is True
    progress.moved()
    assert progress.stalled(STALL_S) is False
    progress.end()
    clock.now += 10 * STALL_S
    assert progress.stalled(STALL_S) is False


async def test_a_handler_stuck_forever_stalls_the_consumer_and_a_finished_batch_clears_it() -> None:
    clock = FakeMonotonic()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    entered = asyncio.Event()

    async def stuck(msg: Inbound) -> None:
        entered.set()
        await never

    consumer = RecordingConsumer(stuck, progress=Progress(clock))
    task = asyncio.create_task(consumer.process(record()))
    await entered.wait()
    assert consumer.progress.stalled(STALL_S) is False
    clock.now += STALL_S + 1
    assert consumer.progress.stalled(STALL_S) is True
    never.set_result(None)  # the await returns at last: the batch ends, the loop moves again
    assert await task is True
    assert consumer.progress.stalled(STALL_S) is False


async def test_retries_through_an_outage_count_as_progress() -> None:
    clock = FakeMonotonic()
    attempts = 0

    async def outage(msg: Inbound) -> None:
        nonlocal attempts
        attempts += 1
        clock.now += STALL_S / 2  # each attempt takes long, but each one ends
        if attempts < 6:
            raise AutoReconnect("the database is away")

    consumer = RecordingConsumer(outage, progress=Progress(clock))
    stalls: list[bool] = []

    async def watch() -> None:
        while True:
            stalls.append(consumer.progress.stalled(STALL_S))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        assert await consumer.process(record()) is True
    finally:
        watcher.cancel()
    assert attempts == 6 and stalls and not any(stalls)


class _Assigned:
    def assignment(self) -> set[Any]:
        return {("integrations.card-issuance.v1", 0)}


async def test_liveness_reports_a_stuck_consumer_only_while_it_has_partitions() -> None:
    clock = FakeMonotonic()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    entered = asyncio.Event()

    async def stuck(msg: Inbound) -> None:
        entered.set()
        await never

    consumer = RecordingConsumer(stuck, progress=Progress(clock))
    task = asyncio.create_task(consumer.process(record()))
    await asyncio.wait_for(entered.wait(), 2)
    clock.now += STALL_S + 1
    assert consumer.liveness(STALL_S)["consumer_progress"] is True  # nothing assigned
    consumer.subscriber.consumer = _Assigned()  # type: ignore[assignment]
    try:
        assert consumer.liveness(STALL_S)["consumer_progress"] is False
        assert consumer.liveness(STALL_S + 2)["consumer_progress"] is True
    finally:
        consumer.subscriber.consumer = None  # type: ignore[assignment]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
