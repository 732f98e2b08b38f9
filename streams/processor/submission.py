"""A wave's submissions: each invoice to the platform, its outcome to the ledger.

The invoices of a wave go to the platform concurrently. A red-letter invoice in the same
wave as its original waits for the original's answer. A wave of ``EARLY_HALF_FROM``
submissions or more writes the outcomes of the first half of its answers, and publishes
their events, while the rest are still on their way. Whatever the wave's size, answers
that have waited ``STRAGGLER_WAIT`` seconds for a slower one (a POST in backoff, say)
are written and published then. The last answers' events go out with the wave's others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.platform.results import Accepted
from streams.processor.delivery import Deferred, Delivered, Deliverer, Undeliverable
from streams.processor.ledgerwait import LedgerGuard
from streams.processor.messages import Messages
from streams.processor.outcomes import outcome
from streams.processor.ports import LedgerPort, OutMessage, OutputPort
from streams.processor.records import IssuedEvent
from streams.processor.redletter import Parked

Submission = tuple[IssuedEvent, InvoiceRecord]
Result = Delivered | Undeliverable | Deferred | Parked

#: From this many submissions a wave records its first half of answers early. The one
#: platform answers a wave's POSTs one after another, so without it every invoice waited
#: for the wave's last answer and then for the whole wave's outcome write: at a steady
#: 2,300 invoices/s, waves of ~118 spent ~20 ms in POSTs and ~9 ms in the outcome
#: (docs/performance.md, item 45). Smaller waves gain too little for a second statement.
EARLY_HALF_FROM = 32

#: The longest an answered invoice waits for slower ones in its wave before it is
#: recorded and announced without them. A POST in backoff can hold its wave for up to
#: ``park_after_seconds``; an invoice the platform has accepted should not wait with it.
#: Long enough that a wave answered at the platform's usual pace is seldom cut into
#: more statements: a 0.1 s wait cut 5 of ~590 waves at a steady 2,300 invoices/s, and
#: 12 of 61 on a backlog (docs/performance.md, item 46).
STRAGGLER_WAIT = 0.25


class Submitter:
    def __init__(
        self,
        *,
        ledger: LedgerPort,
        deliverer: Deliverer,
        output: OutputPort,
        messages: Messages,
        guard: LedgerGuard,
        straggler_wait: float = STRAGGLER_WAIT,
    ) -> None:
        self._ledger = ledger
        self._deliverer = deliverer
        self._output = output
        self._messages = messages
        self._guard = guard
        self._straggler_wait = straggler_wait

    async def submit(self, submit: list[Submission], out: list[OutMessage]) -> None:
        """POST ``submit`` concurrently, record each outcome, and add the events to
        announce to ``out`` (those of an early half are published here already)."""
        loop = asyncio.get_running_loop()
        # Whether each original in this wave was accepted, so a red-letter invoice in the
        # same wave as its original goes as soon as the platform accepted the original.
        # Only originals get one: most waves hold no red invoice.
        originals = {original for event, _ in submit if (original := event.original)}
        inflight: dict[InvoiceKey, asyncio.Future[bool]] = {
            event.key: loop.create_future() for event, _ in submit if event.key in originals
        } if originals else {}  # fmt: skip
        deliveries = [
            asyncio.ensure_future(self._deliver(event, rec, inflight)) for event, rec in submit
        ]
        early: list[asyncio.Future[None]] = []
        try:
            rest = list(range(len(submit)))
            # Answers a statement waits for: the first half of a large wave's, then all.
            # When the straggler wait runs out first, what has answered is recorded then,
            # and the next statement still waits for the half.
            half = len(submit) // 2 if len(submit) >= EARLY_HALF_FROM else 0
            while rest:
                recorded = len(submit) - len(rest)
                goal = (half if recorded < half else len(submit)) - recorded
                await _answered([deliveries[i] for i in rest], goal, self._straggler_wait)
                answered = [i for i in rest if deliveries[i].done()]
                rest = [i for i in rest if not deliveries[i].done()]
                if not answered:
                    continue
                announced = await self._record(
                    [(submit[i], deliveries[i].result()) for i in answered]
                )
                if not rest:
                    out += announced
                elif announced:
                    # Acknowledged before the wave ends, so before its offsets are committed.
                    early.append(asyncio.ensure_future(self._output.publish(announced)))
        except BaseException:
            for delivery in deliveries:
                delivery.cancel()
            for publish in early:
                publish.cancel()
            raise
        for publish in early:
            await publish

    async def _record(self, answered: list[tuple[Submission, Result]]) -> list[OutMessage]:
        """Write the outcomes of ``answered`` in one statement; the events to announce."""
        announced: list[list[OutMessage]] = [[] for _ in answered]
        outcomes = [
            outcome(self._messages, event, record, result, messages)
            for ((event, record), result), messages in zip(answered, announced, strict=True)
        ]
        lost = await self._guard.call(lambda: self._ledger.apply(outcomes))
        # An outcome that lost a race (say, FAILED after another worker CONFIRMED it) is
        # not announced either: the ledger's word is what the events must agree with.
        return [
            message
            for change, messages in zip(outcomes, announced, strict=True)
            if change.record.key not in lost
            for message in messages
        ]

    async def _deliver(
        self,
        event: IssuedEvent,
        record: InvoiceRecord,
        inflight: dict[InvoiceKey, asyncio.Future[bool]],
    ) -> Result:
        accepted = False
        try:
            original = event.original
            pending = None if original is None else inflight.get(original)
            if original is not None and pending is not None and not await pending:
                return Parked()
            result = await self._deliverer.deliver(event, record.attempts, record.failures)
            accepted = isinstance(result, Delivered) and isinstance(result.result, Accepted)
            return result
        finally:
            done = inflight.get(event.key)
            if done is not None and not done.done():
                done.set_result(accepted)


async def _answered(
    deliveries: Sequence[asyncio.Future[Result]], count: int, timeout: float
) -> None:
    """Until at least ``count`` of ``deliveries`` are done, or ``timeout`` seconds pass."""
    left = count - sum(d.done() for d in deliveries)
    if left <= 0:
        return
    loop = asyncio.get_running_loop()
    enough = loop.create_future()

    def one_done(_: object) -> None:
        nonlocal left
        left -= 1
        if left == 0 and not enough.done():
            enough.set_result(None)

    def out_of_time() -> None:
        if not enough.done():
            enough.set_result(None)

    waiting = [d for d in deliveries if not d.done()]
    for delivery in waiting:
        delivery.add_done_callback(one_done)
    timer = loop.call_later(timeout, out_of_time)
    try:
        await enough
    finally:
        timer.cancel()
        for delivery in waiting:
            delivery.remove_done_callback(one_done)
