"""The half-load publisher hands the broker what a producer with a 5 ms linger would:
nothing before the first record has waited the linger, then every open record at once,
and nothing more until that is acknowledged; no record is lost and no error swallowed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bench.publisher import SteadyPublisher
from streams.processor.ports import OutMessage


class _Output:
    """An output port whose every ``publish`` waits until the test acknowledges it."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        assert all(m.topic == "issued" for m in messages)
        self.sent.append([m.key or b"" for m in messages])
        ack = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        await ack


class _Clock:
    """Whole milliseconds, so that no sum lands a hair short of the linger."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def _one_in_flight() -> tuple[_Output, _Clock, SteadyPublisher]:
    """A publisher whose first record, ``a``, has gone and waits for its acknowledgement."""
    output, clock = _Output(), _Clock()
    publisher = SteadyPublisher(output, "issued", linger=5.0, clock=clock)
    publisher.add(b"a", b"1")
    clock.now += 5
    await publisher.send_due()
    await _settle()
    return output, clock, publisher


async def test_the_first_record_waits_the_linger_then_all_open_records_go_together() -> None:
    output, clock = _Output(), _Clock()
    publisher = SteadyPublisher(output, "issued", linger=5.0, clock=clock)
    publisher.add(b"a", b"1")
    clock.now += 4
    publisher.add(b"b", b"2")
    await publisher.send_due()
    await _settle()
    assert output.sent == []
    clock.now += 1
    await publisher.send_due()
    await _settle()
    assert output.sent == [[b"a", b"b"]]


async def test_nothing_more_goes_until_the_last_send_is_acknowledged() -> None:
    output, clock, publisher = await _one_in_flight()
    publisher.add(b"b", b"2")
    publisher.add(b"c", b"3")
    clock.now += 50
    await publisher.send_due()
    await _settle()
    assert output.sent == [[b"a"]]
    output.acks[0].set_result(None)
    await _settle()
    await publisher.send_due()
    await _settle()
    assert output.sent == [[b"a"], [b"b", b"c"]]


async def test_close_sends_what_is_open_and_waits_for_every_acknowledgement() -> None:
    output, _, publisher = await _one_in_flight()
    publisher.add(b"b", b"2")
    closing = asyncio.create_task(publisher.close())
    await _settle()
    assert not closing.done()
    output.acks[0].set_result(None)
    await _settle()
    assert output.sent == [[b"a"], [b"b"]]
    assert not closing.done()
    output.acks[1].set_result(None)
    await asyncio.wait_for(closing, 1.0)


async def test_a_send_that_failed_raises_its_error() -> None:
    output, _, publisher = await _one_in_flight()
    output.acks[0].set_exception(ConnectionError("broker went away"))
    await _settle()
    with pytest.raises(ConnectionError, match="broker went away"):
        await publisher.send_due()
