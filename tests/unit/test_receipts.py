"""The receipt poller: settles PENDING invoices, within the worker's brakes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from streams.errors import PlatformRateLimitedError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import Accepted
from streams.processor.messages import Messages, Topics
from streams.processor.receipts import ReceiptPoller
from streams.retry.ratelimit import TokenBucket

from .fakes import FakeLedger, FakeOutput, FakePlatform

KEY = InvoiceKey("91110108MA01ABCD0B", "26112000000000000001")


class ReceiptLedger(FakeLedger):
    async def due_receipts(self, older_than_seconds: float, limit: int) -> list[InvoiceRecord]:
        return [r for r in self.rows.values() if r.state == State.PENDING][:limit]

    async def payload(self, key: InvoiceKey) -> bytes | None:
        return self.payloads.get(key)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _world(bucket: TokenBucket | None = None) -> tuple[ReceiptLedger, FakePlatform, FakeOutput,
                                                       ReceiptPoller]:  # fmt: skip
    ledger, platform, output = ReceiptLedger(), FakePlatform(), FakeOutput()
    ledger.rows[KEY] = InvoiceRecord(KEY, State.PENDING, "h", receipt_id="R-1",
                                     source_event_id="e1")  # fmt: skip
    platform.receipts["R-1"] = [Accepted("REF-1", datetime.now(UTC))]
    poller = ReceiptPoller(ledger=ledger, platform=platform, output=output,
                           messages=Messages(Topics("issued", "confirmed", "failed", "dlq"), "w1"),
                           interval=0, stuck_after=60, bucket=bucket)  # fmt: skip
    return ledger, platform, output, poller


async def test_polls_wait_out_a_429_the_uploads_got() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=lambda: clock.now, sleep=clock.sleep)
    ledger, _, output, poller = _world(bucket)
    bucket.pause(3.0)  # an upload was answered 429, Retry-After: 3
    assert await poller.poll_once() == 1
    assert clock.slept == [3.0]
    assert ledger.rows[KEY].state == State.CONFIRMED
    [confirmed] = output.on("confirmed")
    assert orjson.loads(confirmed.value)["platform_ref"] == "REF-1"


async def test_a_429_on_a_poll_pauses_the_worker_and_the_receipt_stays_pending() -> None:
    clock = Clock()
    bucket = TokenBucket(0, clock=lambda: clock.now, sleep=clock.sleep)
    ledger, platform, output, poller = _world(bucket)
    platform.receipts["R-1"].insert(0, PlatformRateLimitedError("429", retry_after=2.0))
    assert await poller.poll_once() == 0
    assert ledger.rows[KEY].state == State.PENDING and output.messages == []
    await bucket.acquire()
    assert clock.slept == [2.0]


async def test_a_receipt_settled_by_another_worker_first_is_not_announced_again() -> None:
    ledger, _, output, poller = _world()

    class Raced(ReceiptLedger):
        async def apply(self, changes: Sequence[Change]) -> set[InvoiceKey]:
            # Another worker confirmed it between our claim and our write.
            self.rows[KEY] = InvoiceRecord(KEY, State.CONFIRMED, "h", platform_ref="REF-1")
            return await super().apply(changes)

    raced = Raced()
    raced.rows = ledger.rows
    poller._ledger = raced
    assert await poller.poll_once() == 0
    assert output.messages == []
