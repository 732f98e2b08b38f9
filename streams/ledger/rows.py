"""Between the ledger's rows and its records: a row read into an ``InvoiceRecord``, and
a batch of changes turned into the JSON rows one statement writes (``sql.APPLY``)."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any

import asyncpg
import orjson

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


def invoice_rows(
    changes: Sequence[tuple[Change, State | None]], seal: Seal
) -> tuple[str, list[bytes | None]]:
    """The invoices rows of ``changes`` (each with the state it expects the row in) as one
    JSON array in ``sql.INPUT``'s order, and beside it their payloads, sealed by ``seal``."""
    rows: list[tuple[Any, ...]] = []
    payloads: list[bytes | None] = []
    for change, previous in changes:
        r = change.record
        payload, key_id = seal(r.key, change.payload)
        total = r.total_with_tax
        rows.append((
            r.key.seller_tax_id,
            r.key.invoice_number,
            r.state,
            r.content_hash,
            r.kind,
            r.issue_date,
            # As text: orjson writes no Decimal, and text keeps every digit as it is.
            None if total is None else str(total),
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
            previous,
        ))  # fmt: skip
        payloads.append(payload)
    # A naive time (none should get here) is taken as UTC, as asyncpg's encoder did,
    # not as the server session's zone. States go as they are: orjson writes a StrEnum
    # as its text, where ``.value`` is a Python property read per field.
    return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode(), payloads


def history_rows(changes: Sequence[Change], worker_id: str, checked: Container[InvoiceKey]) -> str:
    """The history entries of ``changes`` as one JSON array in ``sql.HISTORY_INPUT``'s
    order; an entry of a key in ``checked`` is written only if its row changed."""
    return orjson.dumps([
        (
            change.record.key.seller_tax_id,
            change.record.key.invoice_number,
            change.previous,
            change.record.state,
            change.event_id,
            change.reason_code,
            change.detail,
            worker_id,
            change.record.key in checked,
        )
        for change in changes
    ]).decode()  # fmt: skip
