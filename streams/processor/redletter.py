"""The red-letter rules the processor applies before it sends a red-letter invoice:
it goes only after the blue invoice it reverses is confirmed, and only if it fits in
what remains of that original."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from streams.errors import ValidationFailedError
from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.processor.delivery import Undeliverable


class Parked:
    """A red-letter invoice whose original, sent in the same wave, did not settle."""


WAITING_FOR_ORIGINAL = "WAITING_FOR_ORIGINAL"


def confirmed(record: InvoiceRecord | None) -> bool:
    return record is not None and record.state == State.CONFIRMED


def over_credit(
    red: InvoiceRecord, original: InvoiceRecord, credit: dict[InvoiceKey, Decimal]
) -> ValidationFailedError | None:
    """Why ``red`` does not fit in what remains of ``original``, or None; one that fits is
    counted in ``credit``, so the next red of the same original sees it spent."""
    if red.total_with_tax is None or original.total_with_tax is None:
        return None  # amounts the ledger could not read: the platform's check decides
    amount = abs(red.total_with_tax)
    spent = credit.get(original.key, Decimal(0))
    remaining = original.total_with_tax - spent
    if amount > remaining:
        left = max(remaining, Decimal(0))
        return ValidationFailedError(
            f"total_with_tax reverses {amount:.2f}, but only {left:.2f} remains of original "
            f"invoice {original.key.invoice_number} (its total {original.total_with_tax:.2f}, "
            f"{spent:.2f} already reversed by other red-letter invoices); lower the amounts "
            f"to at most {left:.2f}.",
            field="invoice.total_with_tax",
            invoice_key=str(red.key),
        )
    credit[original.key] = spent + amount
    return None


def original_missing(
    original: InvoiceKey, found: InvoiceRecord | None, waited: float
) -> Undeliverable:
    state = "unknown to the ledger" if found is None else found.state.lower()
    return Undeliverable(
        "ORIGINAL_NOT_CONFIRMED",
        f"original invoice {original.invoice_number} is {state} after waiting {waited:.0f}s; "
        "send or fix the original, then replay this one",
        "invoice.original_invoice_number", True, 0, "OriginalNotConfirmed", datetime.now(UTC),
    )  # fmt: skip
