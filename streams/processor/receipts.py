"""Finishing 202 answers: poll each PENDING invoice's receipt until it settles.

Pending invoices live in the ledger, not in memory, so a receipt outlives a
restart and any worker can finish it; the claim query skips rows another
worker holds. Polls go through the same circuit breaker and token bucket as the
uploads (pass the worker's), so they neither hammer a platform that is down nor
spend the request quota behind the uploads' back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from streams.errors import PlatformError, PlatformRejectedError, PlatformUnavailableError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import Accepted
from streams.processor.messages import Messages
from streams.processor.ports import OutMessage, OutputPort, PlatformPort
from streams.processor.records import RawRecord
from streams.retry.circuit import CircuitBreaker
from streams.retry.gate import Gate
from streams.retry.ratelimit import TokenBucket

log = logging.getLogger(__name__)


class ReceiptLedger(Protocol):
    async def due_receipts(self, older_than_seconds: float, limit: int) -> list[InvoiceRecord]: ...

    async def payload(self, key: InvoiceKey) -> bytes | None: ...

    async def apply(self, changes: Sequence[Change]) -> set[InvoiceKey] | None:
        """Write ``changes``; returns the keys another writer changed first, if known."""
        ...


class ReceiptPoller:
    def __init__(
        self,
        *,
        ledger: ReceiptLedger,
        platform: PlatformPort,
        output: OutputPort,
        messages: Messages,
        interval: float,
        stuck_after: float,
        breaker: CircuitBreaker | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self._ledger = ledger
        self._platform = platform
        self._output = output
        self._messages = messages
        self._interval = interval
        self._stuck_after = stuck_after
        self._gate = Gate(breaker, bucket)

    async def poll_once(self, limit: int = 200) -> int:
        """Poll the due receipts once; returns how many settled."""
        due = await self._ledger.due_receipts(self._interval, limit)
        changes: list[Change] = []
        announced: list[list[OutMessage]] = []
        for record in due:
            receipt_id = record.receipt_id
            assert receipt_id is not None
            result = await self._gate.call(partial(self._platform.receipt, receipt_id))
            messages: list[OutMessage] = []
            if isinstance(result, PlatformRejectedError):
                changes.append(await self._rejected(record, result, messages))
                announced.append(messages)
            elif isinstance(result, PlatformUnavailableError):
                log.info("receipt %s of %s not readable now: %s", receipt_id, record.key,
                         result.message)  # fmt: skip
            elif isinstance(result, PlatformError):
                log.error("receipt %s of %s: %s", receipt_id, record.key, result.message)
            elif isinstance(result, Accepted):
                confirmed = record._replace(
                    state=State.CONFIRMED, platform_ref=result.platform_ref,
                    accepted_at=result.accepted_at, confirmed_at=datetime.now(UTC),
                )  # fmt: skip
                changes.append(Change(confirmed, State.PENDING, None,
                                      detail=f"receipt {receipt_id} accepted"))  # fmt: skip
                announced.append(
                    [self._messages.confirmation(confirmed, record.source_event_id or "")]
                )
            elif self._is_stuck(record):
                log.warning(
                    "invoice %s has waited on receipt %s since %s: flag it to ops "
                    "(`invoice-sync status %s`)", record.key, record.receipt_id,
                    record.created_at, record.key.invoice_number,
                )  # fmt: skip
        lost = (await self._ledger.apply(changes) if changes else None) or set()
        # A row another worker moved on meanwhile (re-posted it, say) is theirs to announce.
        out = [m for c, ms in zip(changes, announced, strict=True) if c.record.key not in lost
               for m in ms]  # fmt: skip
        await self._output.publish(out)
        return len(changes) - len(lost)

    def _is_stuck(self, record: InvoiceRecord) -> bool:
        since = record.created_at or record.updated_at
        return since is not None and (datetime.now(UTC) - since).total_seconds() > self._stuck_after

    async def _rejected(
        self, record: InvoiceRecord, exc: PlatformRejectedError, out: list[OutMessage]
    ) -> Change:
        failed = record._replace(
            state=State.FAILED, error_code=exc.code, error_message=exc.message,
            error_field=exc.field,
        )  # fmt: skip
        key = str(record.key).encode()
        raw = RawRecord(
            self._messages.topics.issued,
            record.source_partition if record.source_partition is not None else -1,
            record.source_offset if record.source_offset is not None else -1,
            key,
            await self._ledger.payload(record.key) or b"",
        )
        out += self._messages.failure(
            raw, (record.key, record.source_event_id or ""), exc.code, exc.message, exc.field,
            retryable=False, attempts=record.attempts, exception_class=type(exc).__name__,
        )  # fmt: skip
        return Change(failed, State.PENDING, None, exc.code, exc.message)
