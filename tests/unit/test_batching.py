"""Batches cut where a fetch ends (``take_fetched``) and fetches paced to one per
window (``pace_fetches``): an event waits for the next fetch, never for a timer too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from streams.worker.batching import FetchHandOver, take_fetched
from streams.worker.transport import pace_fetches

WINDOW = 0.05


class _Channel:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> str:
        return await self.queue.get()


class _Stream:
    """What ``take_fetched`` uses of a faust stream: its channel's queue, drained by a
    background task through the stream's processors, as faust's passive drainer does."""

    def __init__(self) -> None:
        self.channel = _Channel()
        self.enable_acks = True
        self.current_event: str | None = None
        self.should_stop = False
        self.loop = asyncio.get_running_loop()
        self.acked: list[str] = []
        self._processors: list[Callable[[str], Awaitable[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    def add_processor(self, processor: Callable[[str], Awaitable[Any]]) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel: _Channel) -> None:
        self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            item = await self.channel.queue.get()
            self.current_event = item
            for processor in self._processors:
                await processor(item)

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def ack(self, event: str) -> None:
        self.acked.append(event)

    def stop(self) -> None:
        self.should_stop = True
        if self._drainer is not None:
            self._drainer.cancel()


def _fetch(stream: _Stream, handover: FetchHandOver, events: list[str]) -> None:
    """What faust's consumer does with one fetch: hand its events over, then ask again."""
    handover.started()
    for event in events:
        stream.channel.queue.put_nowait(event)
    handover.finished()


async def _next(batches: AsyncIterator[list[str]], timeout: float = 2.0) -> list[str]:
    return await asyncio.wait_for(anext(batches), timeout)


async def test_a_batch_is_cut_as_soon_as_a_fetch_is_handed_over_not_on_the_timer() -> None:
    stream, handover = _Stream(), FetchHandOver()
    # A timer this long would fail the test's own timeout: only the hand-over can cut.
    batches = take_fetched(stream, 500, within=60.0, handover=handover)
    first = asyncio.ensure_future(_next(batches))
    await asyncio.sleep(0)
    _fetch(stream, handover, ["a", "b", "c"])
    assert await first == ["a", "b", "c"]
    second = asyncio.ensure_future(_next(batches))
    _fetch(stream, handover, ["d"])
    assert await second == ["d"]
    assert stream.acked == ["a", "b", "c"]  # a batch is acked once its consumer is done
    stream.stop()
    await batches.aclose()


async def test_events_of_a_fetch_still_being_handed_over_wait_for_the_rest() -> None:
    stream, handover = _Stream(), FetchHandOver()
    batches = take_fetched(stream, 500, within=60.0, handover=handover)
    waiting = asyncio.ensure_future(_next(batches))
    handover.started()
    stream.channel.queue.put_nowait("a")
    await asyncio.sleep(0.01)  # the stream has taken "a"; the fetch is not all there
    assert not waiting.done()
    stream.channel.queue.put_nowait("b")
    handover.finished()
    assert await waiting == ["a", "b"]
    stream.stop()
    await batches.aclose()


async def test_a_full_batch_is_cut_without_waiting_for_the_hand_over() -> None:
    stream, handover = _Stream(), FetchHandOver()
    batches = take_fetched(stream, 2, within=60.0, handover=handover)
    handover.started()
    for event in ["a", "b", "c"]:
        stream.channel.queue.put_nowait(event)
    assert await _next(batches) == ["a", "b"]  # never more than max_
    handover.finished()
    assert await _next(batches) == ["c"]
    stream.stop()
    await batches.aclose()


async def test_the_timer_bounds_a_batch_whose_hand_over_is_never_announced() -> None:
    stream, handover = _Stream(), FetchHandOver()
    batches = take_fetched(stream, 500, within=WINDOW, handover=handover)
    handover.started()
    stream.channel.queue.put_nowait("a")
    assert await _next(batches) == ["a"]
    stream.stop()
    await batches.aclose()


def test_a_hand_over_listener_can_be_removed() -> None:
    handover, calls = FetchHandOver(), []
    undo = handover.listen(lambda: calls.append(1))
    handover.finished()
    undo()
    handover.finished()
    assert calls == [1]


class _Fetcher:
    """aiokafka's fetcher as ``pace_fetches`` sees it: a plan of fetches per broker."""

    def __init__(self) -> None:
        self.nodes = [0]

    def _get_actions_per_node(self, assignment: Any) -> tuple[Any, ...]:
        return [(node, f"fetch from {node}") for node in self.nodes], {}, 0.2, False, []


@pytest.fixture
def paced() -> tuple[_Fetcher, list[float]]:
    fetcher, now = _Fetcher(), [100.0]
    pace_fetches(fetcher, WINDOW, clock=lambda: now[0])
    return fetcher, now


def test_a_broker_is_asked_at_most_once_per_window(paced: tuple[_Fetcher, list[float]]) -> None:
    fetcher, now = paced
    requests, _, timeout, _, _ = fetcher._get_actions_per_node(None)
    assert requests == [(0, "fetch from 0")]
    now[0] += 0.02
    requests, _, timeout, _, _ = fetcher._get_actions_per_node(None)
    assert requests == [] and timeout == pytest.approx(0.03)  # wakes when it is due
    now[0] += 0.03
    requests, _, _, _, _ = fetcher._get_actions_per_node(None)
    assert requests == [(0, "fetch from 0")]


def test_each_broker_has_its_own_pace(paced: tuple[_Fetcher, list[float]]) -> None:
    fetcher, now = paced
    fetcher._get_actions_per_node(None)
    fetcher.nodes = [0, 1]
    now[0] += 0.01
    requests, _, _, _, _ = fetcher._get_actions_per_node(None)
    assert requests == [(1, "fetch from 1")]  # broker 1's partitions do not wait for 0's
