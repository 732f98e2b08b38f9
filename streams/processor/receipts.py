"""Finishing 202 answers: poll each PENDING invoice's receipt until it settles.

Pending invoices live in the ledger, not in memory, so a receipt outlives a
restart and any worker can finish it; the claim query skips rows another
worker holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from streams.errors import InvoiceSyncError, PlatformRejectedError, PlatformUnavailableError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import Accepted
from streams.processor.messages import Messages
from streams.processor.ports import OutMessage, OutputPort, PlatformPort
from streams.processor.records import RawRecord

log = logging.getLogger(__name__)


class ReceiptLedger(Protocol):
    async def due_receipts(self, older_than_seconds: float, limit: int) -> list[InvoiceRecord]: ...

    async def payload(self, key: InvoiceKey) -> bytes | None: ...

    async def apply(self, changes: Sequence[Change]) -> None: ...


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
    ) -> None:
        self._ledger = ledger
        self._platform = platform
        self._output = output
        self._messages = messages
        self._interval = interval
        self._stuck_after = stuck_after

    async def poll_once(self, limit: int = 200) -> int:
        """Poll the due receipts once; returns how many settled."""
        due = await self._ledger.due_receipts(self._interval, limit)
        changes: list[Change] = []
        out: list[OutMessage] = []
        for record in due:
            assert record.receipt_id is not None
            try:
                result = await self._platform.receipt(record.receipt_id)
            except PlatformRejectedError as exc:
                changes.append(await self._rejected(record, exc, out))
                continue
            except PlatformUnavailableError as exc:
                log.info("receipt %s of %s not readable now: %s", record.receipt_id, record.key,
                         exc.message)  # fmt: skip
                continue
            except InvoiceSyncError as exc:
                log.error("receipt %s of %s: %s", record.receipt_id, record.key, exc.message)
                continue
            if isinstance(result, Accepted):
                confirmed = replace(
                    record, state=State.CONFIRMED, platform_ref=result.platform_ref,
                    accepted_at=result.accepted_at, confirmed_at=datetime.now(UTC),
                )  # fmt: skip
                changes.append(Change(confirmed, State.PENDING, None,
                                      detail=f"receipt {record.receipt_id} accepted"))  # fmt: skip
                out.append(self._messages.confirmation(confirmed, record.source_event_id or ""))
            elif self._is_stuck(record):
                log.warning(
                    "invoice %s has waited on receipt %s since %s: flag it to ops "
                    "(`invoice-sync status %s`)", record.key, record.receipt_id,
                    record.created_at, record.key.invoice_number,
                )  # fmt: skip
        if changes:
            await self._ledger.apply(changes)
        await self._output.publish(out)
        return len(changes)

    def _is_stuck(self, record: InvoiceRecord) -> bool:
        since = record.created_at or record.updated_at
        return since is not None and (datetime.now(UTC) - since).total_seconds() > self._stuck_after

    async def _rejected(
        self, record: InvoiceRecord, exc: PlatformRejectedError, out: list[OutMessage]
    ) -> Change:
        failed = replace(
            record, state=State.FAILED, error_code=exc.code, error_message=exc.message,
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
