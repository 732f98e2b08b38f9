"""Ledger rows against platform list items: each invoice lands in exactly one bucket."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import ListedInvoice
from streams.reconcile.compare import BUCKETS, Comparison, compare

SELLER = "91110108MA01ABCD0X"
DAY = date(2026, 3, 1)


def row(number: str, state: State = State.CONFIRMED, total: str = "113.00") -> InvoiceRecord:
    ref = f"REF{number}" if state == State.CONFIRMED else None
    return InvoiceRecord(
        key=InvoiceKey(SELLER, number), state=state, content_hash="h", issue_date=DAY,
        total_with_tax=Decimal(total), platform_ref=ref,
    )  # fmt: skip


def item(number: str, total: str = "113.00") -> ListedInvoice:
    return ListedInvoice(number, f"REF{number}", datetime(2026, 3, 1, tzinfo=UTC),
                         Decimal(total), DAY)  # fmt: skip


def buckets_of(result: Comparison) -> dict[str, list[str]]:
    return {b: [line.invoice_number for line in result[b]] for b in BUCKETS}


def test_each_case_lands_in_its_bucket() -> None:
    ledger = [
        row("1"),  # matching
        row("2"),  # missing on platform
        row("4", total="100.00"),  # amounts differ
        row("5", State.PENDING),  # on the platform, ledger still waiting
        row("6", State.FAILED),  # failed and not on the platform: no discrepancy
        row("7", State.SUBMITTING),  # in flight, not there yet: no discrepancy
    ]
    platform = [item("1"), item("3"), item("4", total="113.00"), item("5")]
    result = compare(ledger, platform)
    assert buckets_of(result) == {
        "matching": ["1"],
        "missing_on_platform": ["2"],
        "unknown_to_ledger": ["3"],
        "amounts_differ": ["4"],
        "not_confirmed_in_ledger": ["5"],
    }
    assert not result.clean
    differ = result["amounts_differ"][0]
    assert (differ.ledger_total, differ.platform_total) == (Decimal("100.00"), Decimal("113.00"))


def test_equal_amounts_in_other_notation_match() -> None:
    result = compare([row("1", total="113.0")], [item("1", total="113.00")])
    assert result.counts()["matching"] == 1
    assert result.clean


def test_empty_sides_and_counts() -> None:
    assert compare([], []).counts() == dict.fromkeys(BUCKETS, 0)
    only_platform = compare([], [item(str(n)) for n in range(1100)])
    assert only_platform.counts()["unknown_to_ledger"] == 1100
    assert [line.invoice_number for line in only_platform.all_lines()][:2] == ["0", "1"]


def test_report_rows_are_plain_strings() -> None:
    line = compare([row("2")], []).all_lines()[0]
    assert line.as_dict() == {
        "bucket": "missing_on_platform", "invoice_number": "2", "issue_date": "2026-03-01",
        "ledger_state": "CONFIRMED", "ledger_total": "113.00", "platform_total": None,
        "ledger_platform_ref": "REF2", "platform_ref": None,
    }  # fmt: skip
