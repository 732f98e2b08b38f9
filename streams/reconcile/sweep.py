"""The stuck-invoice sweep: non-final invoices untouched for longer than a threshold.

The worker finishes most of these on its own (parked red-letter invoices, attempts a
dead worker left behind, receipts); the sweep is the same check on demand, for when
an operator wants them moving now or a worker was down for a while.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.kafka import clients
from streams.kafka.sink import ProducerSink
from streams.ledger.queries import stuck_invoices
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.ledger.store import Ledger
from streams.platform.client import PlatformClient
from streams.processor.messages import Messages, Topics
from streams.processor.receipts import ReceiptPoller
from streams.reconcile.repair import Redrive, republish
from streams.security.audit import audited
from streams.settings import Settings


@dataclass
class SweepResult:
    stuck: list[InvoiceRecord]
    republished: Redrive = field(default_factory=Redrive)
    #: PENDING invoices whose receipt was polled, and how many of them settled
    receipts_polled: int = 0
    receipts_settled: int = 0


class _Selected:
    """The receipt poller's ledger, handing it the swept PENDING rows as "due"."""

    def __init__(self, ledger: Ledger, records: Sequence[InvoiceRecord]) -> None:
        self._ledger = ledger
        self._records = list(records)

    async def due_receipts(self, older_than_seconds: float, limit: int) -> list[InvoiceRecord]:
        return self._records[:limit]

    async def payload(self, key: InvoiceKey) -> bytes | None:
        return await self._ledger.payload(key)

    async def apply(self, changes: Sequence[Change]) -> None:
        await self._ledger.apply(changes)


async def sweep(
    ledger: Ledger,
    settings: Settings,
    older_than_seconds: float,
    *,
    actor: str,
    dry_run: bool = False,
    limit: int = 1000,
    seller_tax_id: str | None = None,
) -> SweepResult:
    """Find stuck invoices and, unless ``dry_run``, re-drive them: PENDING ones have
    their receipt polled once; RECEIVED and SUBMITTING ones have their stored payload
    re-published to ``invoices.issued``. A sweep that re-drives anything is audited as
    ``actor``, also when it fails midway; one that finds nothing leaves no row (the
    worker sweeps every minute)."""
    result = SweepResult(await stuck_invoices(ledger, older_than_seconds, limit, seller_tax_id))
    if dry_run or not result.stuck:
        return result
    async with audited(ledger, actor, "sweep", target=seller_tax_id) as audit:
        audit.detail["stuck"] = len(result.stuck)
        await _redrive(ledger, settings, result)
        audit.detail.update(republished=result.republished.redriven,
                            skipped=len(result.republished.skipped),
                            receipts_settled=result.receipts_settled)  # fmt: skip
    return result


async def _redrive(ledger: Ledger, settings: Settings, result: SweepResult) -> None:
    pending = [r for r in result.stuck if r.state == State.PENDING and r.receipt_id]
    others = [r for r in result.stuck if r.state != State.PENDING]
    producer = clients.producer(settings)
    await producer.start()
    try:
        sink = ProducerSink(producer)
        if others:
            result.republished = await republish(ledger, sink, settings.issued_topic, others)
        if pending:
            async with PlatformClient.from_settings(settings) as platform:
                topics = Topics(settings.issued_topic, settings.confirmed_topic,
                                settings.failed_topic, settings.dlq_topic)  # fmt: skip
                poller = ReceiptPoller(
                    ledger=_Selected(ledger, pending), platform=platform, output=sink,
                    messages=Messages(topics, f"{settings.worker_id}-sweep"),
                    interval=0, stuck_after=settings.receipt_stuck_seconds,
                )  # fmt: skip
                result.receipts_polled = len(pending)
                result.receipts_settled = await poller.poll_once(limit=len(pending))
    finally:
        await producer.stop()
