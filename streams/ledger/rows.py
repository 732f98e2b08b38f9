"""Between the ledger's rows and its records: a row read into an ``InvoiceRecord``, and
a batch of changes turned into the column arrays one ``unnest`` statement writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State

#: encrypts a payload for its invoice: (sealed payload, key id), or as it is, None
Seal = Callable[[InvoiceKey, bytes | None], tuple[bytes | None, str | None]]


def record_from_row(row: asyncpg.Record) -> InvoiceRecord:
    return InvoiceRecord(
        key=InvoiceKey(row["seller_tax_id"], row["invoice_number"]),
        state=State(row["state"]),
        content_hash=row["content_hash"],
        kind=row["kind"],
        issue_date=row["issue_date"],
        total_with_tax=row["total_with_tax"],
        source_event_id=row["source_event_id"],
        source_partition=row["source_partition"],
        source_offset=row["source_offset"],
        attempts=row["attempts"],
        platform_ref=row["platform_ref"],
        accepted_at=row["accepted_at"],
        receipt_id=row["receipt_id"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        error_field=row["error_field"],
        issued_at=row["issued_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        confirmed_at=row["confirmed_at"],
        next_attempt_at=row["next_attempt_at"],
        failures=row["failures"],
        original_invoice_number=row["original_invoice_number"],
    )


def invoice_columns(changes: Sequence[Change], seal: Seal) -> list[list[Any]]:
    """The invoices rows of ``changes``, column by column; ``seal`` encrypts a payload."""
    columns: list[list[Any]] = [[] for _ in range(24)]
    for change in changes:
        r = change.record
        payload, key_id = seal(r.key, change.payload)
        values: tuple[Any, ...] = (
            r.key.seller_tax_id,
            r.key.invoice_number,
            r.state.value,
            r.content_hash,
            r.kind,
            r.issue_date,
            r.total_with_tax,
            payload,
            r.source_event_id,
            r.source_partition,
            r.source_offset,
            r.attempts,
            r.platform_ref,
            r.accepted_at,
            r.receipt_id,
            r.error_code,
            r.error_message,
            r.error_field,
            r.issued_at,
            r.confirmed_at,
            r.next_attempt_at,
            r.failures,
            key_id,
            r.original_invoice_number,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def history_columns(changes: Sequence[Change], worker_id: str) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(8)]
    for change in changes:
        values = (
            change.record.key.seller_tax_id,
            change.record.key.invoice_number,
            None if change.previous is None else change.previous.value,
            change.record.state.value,
            change.event_id,
            change.reason_code,
            change.detail,
            worker_id,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
