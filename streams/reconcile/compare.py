"""Ledger rows against platform list items, sorted into buckets. Pure: no I/O.

- ``matching``: confirmed in the ledger, on the platform, same total.
- ``missing_on_platform``: confirmed in the ledger, absent from the platform.
- ``unknown_to_ledger``: on the platform, no ledger row at all.
- ``amounts_differ``: on both, but ``total_with_tax`` differs.
- ``not_confirmed_in_ledger``: on the platform while the ledger row is still in flight
  or failed (in flight settles by itself; failed-but-stored needs a look).

Ledger rows that are not confirmed and not on the platform are no discrepancy: failed
invoices never reach the platform, in-flight ones have not yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from streams.ledger.records import InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import ListedInvoice

BUCKETS = (
    "matching",
    "missing_on_platform",
    "unknown_to_ledger",
    "amounts_differ",
    "not_confirmed_in_ledger",
)
#: the buckets that are a discrepancy
DISCREPANCIES = BUCKETS[1:]


@dataclass(frozen=True, slots=True)
class Line:
    bucket: str
    invoice_number: str
    ledger_state: str | None = None
    ledger_total: Decimal | None = None
    platform_total: Decimal | None = None
    ledger_platform_ref: str | None = None
    platform_ref: str | None = None
    issue_date: date | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "invoice_number": self.invoice_number,
            "issue_date": None if self.issue_date is None else self.issue_date.isoformat(),
            "ledger_state": self.ledger_state,
            "ledger_total": None if self.ledger_total is None else str(self.ledger_total),
            "platform_total": None if self.platform_total is None else str(self.platform_total),
            "ledger_platform_ref": self.ledger_platform_ref,
            "platform_ref": self.platform_ref,
        }


@dataclass
class Comparison:
    lines: dict[str, list[Line]] = field(default_factory=lambda: {b: [] for b in BUCKETS})

    def __getitem__(self, bucket: str) -> list[Line]:
        return self.lines[bucket]

    def counts(self) -> dict[str, int]:
        return {bucket: len(self.lines[bucket]) for bucket in BUCKETS}

    @property
    def clean(self) -> bool:
        return not any(self.lines[b] for b in DISCREPANCIES)

    def all_lines(self) -> list[Line]:
        return [line for bucket in BUCKETS for line in self.lines[bucket]]


def compare(ledger: Iterable[InvoiceRecord], platform: Iterable[ListedInvoice]) -> Comparison:
    """Sort one seller's invoices (same issue-date range on both sides) into buckets."""
    rows = {r.key.invoice_number: r for r in ledger}
    items = {i.invoice_number: i for i in platform}
    result = Comparison()
    for number in sorted(rows.keys() | items.keys()):
        row, item = rows.get(number), items.get(number)
        bucket = _bucket(row, item)
        if bucket is None:
            continue
        result.lines[bucket].append(
            Line(
                bucket=bucket,
                invoice_number=number,
                ledger_state=None if row is None else row.state.value,
                ledger_total=None if row is None else row.total_with_tax,
                platform_total=None if item is None else item.total_with_tax,
                ledger_platform_ref=None if row is None else row.platform_ref,
                platform_ref=None if item is None else item.platform_ref,
                issue_date=item.issue_date
                if item is not None
                else (row.issue_date if row else None),
            )
        )
    return result


def _bucket(row: InvoiceRecord | None, item: ListedInvoice | None) -> str | None:
    if row is None:
        return "unknown_to_ledger"
    if item is None:
        return "missing_on_platform" if row.state == State.CONFIRMED else None
    if row.state != State.CONFIRMED:
        return "not_confirmed_in_ledger"
    if row.total_with_tax is None or row.total_with_tax != item.total_with_tax:
        return "amounts_differ"
    return "matching"
