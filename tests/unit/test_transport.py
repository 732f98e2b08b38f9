"""faust's hand-over of each fetched message, without four tasks per message
(``EagerWaitFirst``): the same answers as mode's ``wait_first``, waits included."""

from __future__ import annotations

import asyncio
import gc

from mode import Service

from streams.worker.transport import EagerWaitFirst


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
