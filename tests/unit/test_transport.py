"""The consumer's drain loop: a fetch's records of the issued topic reach the agent as
one batch (``app.fetched``), read offsets and rebalances behave as in faust's own loop,
and records of any other topic still take faust's way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.worker.transport import WorkerApp

ISSUED = "invoices.issued"
P0, P1 = TP(ISSUED, 0), TP(ISSUED, 1)


def _message(tp: TP, offset: int) -> Any:
    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset)


@pytest.fixture
async def app() -> AsyncIterator[WorkerApp]:
    app = WorkerApp("t", fetch_max_wait_ms=50, fetch_max_bytes=1 << 20, fetch_interval=0.05,
                    bulk_topic=ISSUED, read_ahead=1, broker="kafka://127.0.0.1:1",
                    store="memory://", web_enabled=False,
                    loop=asyncio.get_running_loop())  # fmt: skip
    app.flow_control.resume()  # as after the first assignment
    yield app
    app.consumer._thread.thread_loop.close()  # made for the fetch thread, which never started


async def _drain(app: WorkerApp, *fetches: list[tuple[TP, Any]]) -> asyncio.Task[None]:
    """Run the consumer's drain loop over ``fetches``; it stops after the last one."""
    consumer: Any = app.consumer
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    pending = list(fetches)

    async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        if not pending:
            fetcher._stopped.set()
            return
        for record in pending.pop(0):
            yield record

    consumer.getmany = getmany
    return asyncio.create_task(consumer._drain_messages(fetcher))


async def test_a_fetch_reaches_the_agent_as_one_batch_in_order(app: WorkerApp) -> None:
    records = [(P0, _message(P0, 10)), (P1, _message(P1, 3)), (P0, _message(P0, 11))]
    await asyncio.wait_for(await _drain(app, records), 5)
    batch = await asyncio.wait_for(anext(app.fetched.batches(500)), 5)
    assert batch == [message for _, message in records]
    assert app.consumer._read_offset[P0] == 11 and app.consumer._read_offset[P1] == 3


async def test_a_record_read_before_is_not_handed_over_again(app: WorkerApp) -> None:
    app.consumer._read_offset[P0] = 10
    again, new = _message(P0, 9), _message(P0, 11)
    await asyncio.wait_for(await _drain(app, [(P0, again), (P0, new)]), 5)
    assert await asyncio.wait_for(anext(app.fetched.batches(500)), 5) == [new]


async def test_records_of_another_topic_go_to_fausts_callback(app: WorkerApp) -> None:
    other = TP("other", 0)
    delivered: list[Any] = []

    async def callback(message: Any) -> None:
        delivered.append(message)

    app.consumer.callback = callback
    mine, theirs = _message(P0, 1), _message(other, 1)
    await asyncio.wait_for(await _drain(app, [(P0, mine), (other, theirs)]), 5)
    assert delivered == [theirs]
    assert await asyncio.wait_for(anext(app.fetched.batches(500)), 5) == [mine]


async def test_a_rebalance_abandons_a_hand_over_held_by_a_full_read_ahead(
    app: WorkerApp,
) -> None:
    first, second = _message(P0, 1), _message(P0, 2)
    draining = await _drain(app, [(P0, first)], [(P0, second)])
    await asyncio.sleep(0.05)
    assert not draining.done()  # the read-ahead (one fetch) is full: the loop waits
    app.consumer.stop_flow()  # a rebalance begins: faust abandons the hand-over
    await asyncio.wait_for(draining, 5)
    assert app.fetched.waiting() == 1  # the second fetch never went in
