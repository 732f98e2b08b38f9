"""faust's hand-over of each fetched message, without four tasks per message
(``EagerWaitFirst``): the same answers as mode's ``wait_first``, waits included. And the
consumer's fetch when every partition is stopped because its stream's buffer is full."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from faust.types import TP
from mode import Service

from streams.worker.transport import EagerWaitFirst, WorkerApp


class _Service(EagerWaitFirst, Service):
    pass


async def _put(queue: asyncio.Queue[int], item: int) -> int:
    # What faust's hand-over does: put the message in its stream's buffer.
    await queue.put(item)
    return item


async def test_a_hand_over_with_room_wins_at_once_and_closes_the_other_waits() -> None:
    service, queue, suspended = _Service(), asyncio.Queue[int](maxsize=1), asyncio.Event()
    handover = _put(queue, 7)
    results = await service.wait_first(handover, suspended.wait())
    assert (results.done, results.results, results.stopped) == ([handover], [7], False)
    assert queue.get_nowait() == 7
    gc.collect()  # an unclosed coroutine would warn here, and warnings fail the suite


async def test_a_hand_over_that_waits_for_room_finishes_once_there_is_room() -> None:
    service, queue, suspended = _Service(), asyncio.Queue[int](maxsize=1), asyncio.Event()
    queue.put_nowait(1)
    waiting = asyncio.create_task(service.wait_first(_put(queue, 2), suspended.wait()))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert queue.get_nowait() == 1
    results = await asyncio.wait_for(waiting, timeout=5)
    assert results.results == [2]
    assert queue.get_nowait() == 2


async def test_a_waiting_hand_over_gives_way_to_a_suspended_flow() -> None:
    service, queue, suspended = _Service(), asyncio.Queue[int](maxsize=1), asyncio.Event()
    queue.put_nowait(1)
    gave_up = asyncio.Event()

    async def handover() -> None:
        try:
            await queue.put(2)
        except asyncio.CancelledError:
            gave_up.set()
            raise

    flow = suspended.wait()
    waiting = asyncio.create_task(service.wait_first(handover(), flow))
    await asyncio.sleep(0)
    suspended.set()  # a rebalance: faust abandons the message instead of waiting
    results = await asyncio.wait_for(waiting, timeout=5)
    assert results.done == [flow]
    await asyncio.wait_for(gave_up.wait(), timeout=5)
    assert queue.qsize() == 1  # the abandoned message never went in


async def test_a_stopped_service_answers_as_mode_does() -> None:
    service, queue = _Service(), asyncio.Queue[int]()
    await service.stop()
    results = await service.wait_first(_put(queue, 3))
    assert results.stopped


ISSUED = [TP("invoices.issued", 0), TP("invoices.issued", 1)]


@pytest.fixture
def fetches() -> list[set[TP]]:
    """Which partitions each fetch asks the broker for."""
    return []


@pytest.fixture
async def consumer(fetches: list[set[TP]]) -> AsyncIterator[Any]:
    """Our faust consumer with two partitions assigned and every partition's stream buffer
    full."""
    app = WorkerApp("t", fetch_max_wait_ms=50, fetch_max_bytes=1 << 20, fetch_interval=0.05,
                    broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False,
                    loop=asyncio.get_running_loop())  # fmt: skip
    consumer = app.consumer
    consumer.assignment = lambda: set(ISSUED)

    async def getmany(active_partitions: set[TP], timeout: float) -> Mapping[TP, list[str]]:
        fetches.append(set(active_partitions))
        return {tp: [f"record of {tp.partition}"] for tp in active_partitions}

    consumer._getmany = getmany
    for tp in ISSUED:
        consumer.on_buffer_full(tp)
    yield consumer
    consumer._thread.thread_loop.close()  # made for the fetch thread, which never started


async def test_a_partition_whose_buffer_drains_is_fetched_again_at_once(
    consumer: Any, fetches: list[set[TP]]
) -> None:
    # faust slept a whole second here, while the backlog waited and the worker ran dry.
    waiting = asyncio.create_task(consumer._wait_next_records(60.0))
    await asyncio.sleep(0)
    assert not waiting.done() and fetches == []
    consumer.on_buffer_drop(ISSUED[1])
    records, active = await asyncio.wait_for(waiting, timeout=5)
    assert fetches == [{ISSUED[1]}]
    assert records == {ISSUED[1]: ["record of 1"]} and active == {ISSUED[1]}


async def test_while_every_buffer_stays_full_nothing_is_fetched(
    consumer: Any, fetches: list[set[TP]]
) -> None:
    records, active = await consumer._wait_next_records(0.01)
    assert (records, active, fetches) == ({}, set(), [])
