"""The half-load publisher settles its sends as they complete: none is left to a
gather of the whole phase at its end, and none of their errors is lost."""

from __future__ import annotations

import asyncio

import pytest

from bench.pipeline import unsettled


async def test_settled_sends_are_dropped_and_the_rest_kept_in_order() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[int]] = [loop.create_future() for _ in range(4)]
    futures[0].set_result(0)
    futures[2].set_result(2)
    assert unsettled(futures) == [futures[1], futures[3]]


async def test_a_send_that_failed_raises_its_error() -> None:
    loop = asyncio.get_running_loop()
    ok: asyncio.Future[int] = loop.create_future()
    failed: asyncio.Future[int] = loop.create_future()
    ok.set_result(1)
    failed.set_exception(ConnectionError("broker went away"))
    with pytest.raises(ConnectionError, match="broker went away"):
        unsettled([ok, failed])
