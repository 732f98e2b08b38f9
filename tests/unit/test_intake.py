"""Overlapping batches: acks only when done, one invoice's batches in order, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from streams.processor.intake import Intake
from streams.processor.records import RawRecord

from .fakes import no_sleep


def batch(*keys: str) -> list[RawRecord]:
    return [RawRecord("t", 0, i, k.encode(), b"{}") for i, k in enumerate(keys)]


class Gated:
    """A processor whose batches finish only when the test opens their gate."""

    def __init__(self) -> None:
        self.gates: dict[bytes, asyncio.Event] = {}
        self.started: list[list[bytes]] = []
        self.failures = 0
        self.changed = asyncio.Event()
        self.intakes: list[Intake] = []

    def intake(self, depth: int, **kwargs: Any) -> Intake:
        intake = Intake(self.process, depth=depth, **kwargs)
        self.intakes.append(intake)
        return intake

    def acker(self, acked: list[str], name: str) -> Callable[[], None]:
        def ack() -> None:
            acked.append(name)
            self.changed.set()

        return ack

    async def until(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key.encode(), asyncio.Event())

    async def process(self, records: Sequence[RawRecord]) -> None:
        keys = [r.key for r in records if r.key is not None]
        self.started.append(keys)
        self.changed.set()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("boom")
        for key in keys:
            await self.gates.setdefault(key, asyncio.Event()).wait()


@pytest.fixture
async def gated() -> AsyncIterator[Gated]:
    gated = Gated()
    yield gated
    # Batches a test left waiting must not outlive it (pending tasks destroyed later
    # would surface as errors in unrelated tests).
    for gate in gated.gates.values():
        gate.set()
    for intake in gated.intakes:
        await intake.drain(timeout=1.0)


async def settle() -> None:
    """Let every runnable task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_batches_overlap_but_are_acked_in_the_order_they_came(gated: Gated) -> None:
    # Acked out of order, b's offsets could be committed over a still in flight (faust,
    # on a partition with no committed offset yet), and a crash would then lose a.
    intake = gated.intake(4)
    acked: list[str] = []
    await intake.admit(batch("a"), gated.acker(acked, "a"))
    await intake.admit(batch("b"), gated.acker(acked, "b"))
    await gated.until(lambda: len(gated.started) == 2)  # b started while a still waits
    gated.gate("b").set()
    await settle()
    assert intake.in_flight == 1  # b is done and its slot free, but not acked before a
    assert acked == []
    gated.gate("a").set()
    await gated.until(lambda: acked == ["a", "b"])
    assert intake.in_flight == 0


async def test_a_batch_sharing_an_invoice_waits_for_the_earlier_one(gated: Gated) -> None:
    intake = gated.intake(4)
    acked: list[str] = []
    await intake.admit(batch("a", "x"), gated.acker(acked, "first"))
    second = asyncio.create_task(intake.admit(batch("x"), gated.acker(acked, "second")))
    await settle()
    assert len(gated.started) == 1 and not second.done()
    gated.gate("x").set()
    gated.gate("a").set()
    await second
    await gated.until(lambda: acked == ["first", "second"])


async def test_depth_bounds_the_batches_in_flight(gated: Gated) -> None:
    intake = gated.intake(2)
    await intake.admit(batch("a"), lambda: None)
    await intake.admit(batch("b"), lambda: None)
    third = asyncio.create_task(intake.admit(batch("c"), lambda: None))
    await settle()
    assert not third.done() and intake.in_flight == 2
    gated.gate("a").set()
    await third
    assert intake.in_flight == 2


async def test_an_unexpected_error_retries_the_batch_before_acking(gated: Gated) -> None:
    gated.failures = 2
    gated.gate("a").set()
    intake = gated.intake(1, sleep=no_sleep)
    acked: list[str] = []
    await intake.admit(batch("a"), gated.acker(acked, "a"))
    await gated.until(lambda: acked == ["a"])
    assert len(gated.started) == 3


async def test_drain_cancels_what_does_not_finish_and_never_acks_it(gated: Gated) -> None:
    intake = gated.intake(2)
    acked: list[str] = []
    await intake.admit(batch("a"), gated.acker(acked, "a"))
    await intake.admit(batch("b"), gated.acker(acked, "b"))
    gated.gate("a").set()
    await intake.drain(timeout=0.05)
    assert acked == ["a"]
    assert intake.in_flight == 0
