"""What the processor consumes: a Kafka record, and an issued event decoded from one."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from streams.errors import ValidationFailedError
from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.ledger.states import State


class RawRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    #: the Kafka headers, e.g. the DLQ offset a replayed record came from
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class IssuedEvent(NamedTuple):
    raw: RawRecord
    event_id: str
    occurred_at: datetime
    key: InvoiceKey
    #: the invoice fields read after decoding (see ``summary_of``); the rest is in ``body``
    summary: dict[str, Any]
    #: the invoice object as POSTed to the platform
    body: bytes
    #: identical content ⇔ identical hash; decides duplicate vs conflict
    content_hash: str
    #: domain-rule failures, if any: the event is well-formed but must not be sent
    violation: ValidationFailedError | None = None
    #: the key of the blue invoice a red one reverses; None on a blue invoice
    original: InvoiceKey | None = None


def summary_of(invoice: dict[str, Any]) -> dict[str, Any]:
    """The fields of a decoded invoice the worker reads later: the ledger row, the
    red-letter rules and the platform's duplicate check (``key_figures``). Keeping these
    instead of the whole decoded invoice makes an invoice in flight ~2 KB instead of
    ~8 KB of nested objects, so the worker's memory is a smaller multiple of its window."""
    seller, buyer = invoice.get("seller"), invoice.get("buyer")
    summary = {name: invoice.get(name) for name in _SUMMARY_FIELDS}
    summary["seller"] = {"tax_id": seller.get("tax_id") if isinstance(seller, dict) else None}
    summary["buyer"] = {"tax_id": buyer.get("tax_id") if isinstance(buyer, dict) else None}
    return summary


_SUMMARY_FIELDS = (
    "invoice_number", "kind", "issue_date", "total_with_tax", "original_invoice_number"
)  # fmt: skip


def new_record(event: IssuedEvent, state: State, *, attempts: int = 0) -> InvoiceRecord:
    """The ledger row an issued event starts (or restarts) its invoice with; ``attempts``
    carries the POSTs of an earlier event of the same invoice."""
    invoice = event.summary
    return InvoiceRecord(
        key=event.key,
        state=state,
        attempts=attempts,
        content_hash=event.content_hash,
        kind=_str_or_none(invoice.get("kind")),
        issue_date=_date_or_none(invoice.get("issue_date")),
        total_with_tax=_decimal_or_none(invoice.get("total_with_tax")),
        source_event_id=event.event_id,
        source_partition=event.raw.partition,
        source_offset=event.raw.offset,
        issued_at=event.occurred_at,
        # Only reds carry it: the ledger sums confirmed reds per original by this column.
        original_invoice_number=(
            _str_or_none(invoice.get("original_invoice_number"))
            if invoice.get("kind") == "red"
            else None
        ),
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _date_or_none(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _decimal_or_none(value: object) -> Decimal | None:
    # Failed invoices are recorded too, so the value may be anything the schema let by.
    try:
        return Decimal(value) if isinstance(value, str) else None
    except ArithmeticError:
        return None
