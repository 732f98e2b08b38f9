"""Read-only ledger queries for people: a seller's history, stuck invoices.

Kept apart from ``store`` (the worker's hot path). Everything here goes through
``Ledger.connection()``, the ledger's public pooled connection, and never writes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import orjson

from streams.ledger.records import InvoiceRecord

# The row mapping the worker uses, so a lookup reads exactly what the worker wrote.
from streams.ledger.rows import record_from_row
from streams.ledger.sql import COLUMNS
from streams.ledger.states import State
from streams.ledger.store import Ledger

#: the most rows one page may hold (CLI and HTTP API alike)
MAX_PAGE_SIZE = 1000
UNFINISHED = (State.RECEIVED, State.SUBMITTING, State.PENDING)


class BadCursorError(ValueError):
    """A page cursor this ledger did not hand out."""


@dataclass(frozen=True, slots=True)
class Page:
    records: list[InvoiceRecord]
    #: where the next page starts (pass it as ``after``), or None on the last page
    next_cursor: str | None


def encode_cursor(issue_date: date, invoice_number: str) -> str:
    raw = orjson.dumps([issue_date.isoformat(), invoice_number])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[date, str]:
    """The (issue date, invoice number) a page ends with; ``BadCursorError`` if garbled."""
    bad = BadCursorError(f"{cursor!r} is not a page cursor this ledger issued")
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:  # JSONDecodeError is a ValueError
        raise bad from exc
    if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) for p in parts)):
        raise bad
    try:
        return date.fromisoformat(parts[0]), parts[1]
    except ValueError as exc:
        raise bad from exc


async def invoice_page(
    ledger: Ledger,
    seller_tax_id: str,
    date_from: date,
    date_to: date,
    *,
    state: State | None = None,
    page_size: int = 100,
    after: str | None = None,
) -> Page:
    """One page of the seller's invoices issued in [date_from, date_to], ordered by issue
    date then number. Keyset paging over ``invoices_seller_issue_date``: a page starts
    after the last row of the previous one, so rows added meanwhile never shift it."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
    after_date, after_number = decode_cursor(after) if after else (None, None)
    async with ledger.connection() as conn:
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM invoices
                WHERE seller_tax_id = $1 AND issue_date BETWEEN $2 AND $3
                  AND ($4::text IS NULL OR state = $4)
                  AND ($5::date IS NULL OR (issue_date, invoice_number) > ($5, $6::text))
                ORDER BY issue_date, invoice_number
                LIMIT $7""",
            seller_tax_id, date_from, date_to, None if state is None else state.value,
            after_date, after_number, page_size + 1,
        )  # fmt: skip
    records = [record_from_row(row) for row in rows[:page_size]]
    more = len(rows) > page_size
    last = records[-1] if records else None
    cursor = None
    if more and last is not None and last.issue_date is not None:
        cursor = encode_cursor(last.issue_date, last.key.invoice_number)
    return Page(records, cursor)


async def seller_invoices(
    ledger: Ledger, seller_tax_id: str, date_from: date, date_to: date
) -> AsyncIterator[InvoiceRecord]:
    """Every invoice of the seller issued in the range, page by page."""
    cursor: str | None = None
    while True:
        page = await invoice_page(
            ledger, seller_tax_id, date_from, date_to, page_size=MAX_PAGE_SIZE, after=cursor
        )
        for record in page.records:
            yield record
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def stuck_invoices(
    ledger: Ledger, older_than_seconds: float, limit: int = 1000, seller_tax_id: str | None = None
) -> list[InvoiceRecord]:
    """Invoices in a non-final state whose row has not changed for ``older_than_seconds``,
    oldest first (the partial index ``invoices_unfinished``)."""
    async with ledger.connection() as conn:
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM invoices
                WHERE state IN ('RECEIVED', 'SUBMITTING', 'PENDING')
                  AND updated_at < now() - make_interval(secs => $1)
                  AND ($3::text IS NULL OR seller_tax_id = $3)
                ORDER BY updated_at LIMIT $2""",
            older_than_seconds,
            limit,
            seller_tax_id,
        )
    return [record_from_row(row) for row in rows]
