"""Fetches handed to the agent whole (``Fetched``), and fetches paced to one per window
(``pace_fetches``): an event waits for the next fetch, never for a timer too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent

from streams.worker.batching import Fetched
from streams.worker.transport import pace_fetches

WINDOW = 0.05


def _flowing() -> FlowControlEvent:
    flow = FlowControlEvent()
    flow.resume()
    return flow


async def test_each_fetch_is_a_batch_in_the_order_fetched() -> None:
    fetched = Fetched(_flowing(), read_ahead=4)
    await fetched.put(["a", "b", "c"])
    await fetched.put(["d"])
    batches = fetched.batches(500)
    assert await asyncio.wait_for(anext(batches), 2) == ["a", "b", "c"]
    assert await asyncio.wait_for(anext(batches), 2) == ["d"]


async def test_a_fetch_larger_than_a_batch_is_cut_to_size() -> None:
    fetched = Fetched(_flowing(), read_ahead=4)
    await fetched.put(["a", "b", "c", "d", "e"])
    batches = fetched.batches(2)
    assert [await anext(batches) for _ in range(3)] == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_full_read_ahead_holds_the_consumer_until_a_batch_is_taken() -> None:
    fetched = Fetched(_flowing(), read_ahead=2)
    await fetched.put(["a"])
    await fetched.put(["b"])
    third = asyncio.create_task(fetched.put(["c"]))
    await asyncio.sleep(0.01)
    assert not third.done() and fetched.waiting() == 2
    assert await anext(fetched.batches(500)) == ["a"]
    await asyncio.wait_for(third, 2)
    assert fetched.waiting() == 2


async def test_a_rebalance_holds_the_hand_over_and_drops_what_was_not_taken() -> None:
    flow = _flowing()
    fetched = Fetched(flow, read_ahead=4)
    await fetched.put(["from before the rebalance"])
    flow.suspend()  # what faust does when partitions are revoked ...
    flow.clear()  # ... and then it empties the buffers: those records are not acked
    assert fetched.waiting() == 0
    held = asyncio.create_task(fetched.put(["fetched during it"]))
    await asyncio.sleep(0.01)
    assert not held.done()
    flow.resume()  # assigned again; faust's consumer seeks to the committed offsets
    await asyncio.wait_for(held, 2)
    assert await anext(fetched.batches(500)) == ["fetched during it"]


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
