"""Everything the sandbox platform stored, its receipts, and every POST counted.

The identity of an invoice is (seller tax id, invoice number); it is stored at most
once, so a test can prove exactly-once delivery from ``stored``/``post_count``.
Receipts settle lazily: whoever looks (a request, a test) first settles those whose
time has come, by the injected clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from streams.sandbox.rules import CENT, Rejection, check, money

InvoiceKey = tuple[str, str]
Clock = Callable[[], datetime]
ReceiptStatus = Literal["PROCESSING", "ACCEPTED", "REJECTED"]
#: the platform is in China and answers in its own offset
_BEIJING = timezone(timedelta(hours=8))


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(_BEIJING).isoformat(timespec="milliseconds")


def _two_places(value: object) -> str | None:
    amount = money(value)
    return None if amount is None else str(amount.quantize(CENT))


@dataclass(frozen=True)
class StoredInvoice:
    seller_tax_id: str
    invoice_number: str
    platform_ref: str
    accepted_at: datetime
    #: the posted invoice, unchanged
    invoice: Mapping[str, Any]

    @property
    def key(self) -> InvoiceKey:
        return (self.seller_tax_id, self.invoice_number)

    @property
    def issue_date(self) -> str:
        return str(self.invoice["issue_date"])

    def accepted_json(self) -> dict[str, Any]:
        return {
            "status": "ACCEPTED",
            "platform_ref": self.platform_ref,
            "accepted_at": rfc3339(self.accepted_at),
        }

    def echo_json(self) -> dict[str, Any]:
        """The 409 ALREADY_EXISTS body: enough for a client to tell duplicate from conflict."""
        buyer = self.invoice.get("buyer")
        return {
            "code": "ALREADY_EXISTS",
            "platform_ref": self.platform_ref,
            "accepted_at": rfc3339(self.accepted_at),
            "total_with_tax": _two_places(self.invoice.get("total_with_tax")),
            "issue_date": self.issue_date,
            "buyer_tax_id": buyer.get("tax_id") if isinstance(buyer, Mapping) else None,
        }

    def item_json(self) -> dict[str, Any]:
        return {
            "invoice_number": self.invoice_number,
            "platform_ref": self.platform_ref,
            "accepted_at": rfc3339(self.accepted_at),
            "total_with_tax": _two_places(self.invoice.get("total_with_tax")),
            "issue_date": self.issue_date,
        }


@dataclass
class Receipt:
    receipt_id: str
    key: InvoiceKey
    invoice: Mapping[str, Any]
    created_at: datetime
    #: None: stays PROCESSING for ever (the "uploaded but never updated" case)
    settles_at: datetime | None
    status: ReceiptStatus = "PROCESSING"
    stored: StoredInvoice | None = None
    rejection: Rejection | None = None

    def to_json(self) -> dict[str, Any]:
        if self.stored is not None:
            return self.stored.accepted_json()
        if self.rejection is not None:
            return {"status": "REJECTED", **self.rejection.to_json()}
        return {"status": "PROCESSING"}


@dataclass(frozen=True)
class Accepted:
    stored: StoredInvoice


@dataclass(frozen=True)
class Processing:
    receipt: Receipt


@dataclass(frozen=True)
class AlreadyExists:
    stored: StoredInvoice


@dataclass(frozen=True)
class Rejected:
    rejection: Rejection


Outcome = Accepted | Processing | AlreadyExists | Rejected


@dataclass(frozen=True)
class Snapshot:
    """A copy of the store at one moment, safe to keep while the server runs on."""

    stored: Mapping[InvoiceKey, StoredInvoice]
    receipts: Mapping[str, Receipt]
    post_counts: Mapping[InvoiceKey, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "stored": [
                {"seller_tax_id": s.seller_tax_id, **s.item_json(), "invoice": s.invoice}
                for s in self.stored.values()
            ],
            "receipts": [
                {
                    "receipt_id": r.receipt_id,
                    "seller_tax_id": r.key[0],
                    "invoice_number": r.key[1],
                    **r.to_json(),
                }
                for r in self.receipts.values()
            ],
            "post_counts": [
                {"seller_tax_id": k[0], "invoice_number": k[1], "posts": n}
                for k, n in self.post_counts.items()
            ],
        }


def invoice_key(invoice: object) -> InvoiceKey | None:
    if not isinstance(invoice, Mapping):
        return None
    seller, number = invoice.get("seller"), invoice.get("invoice_number")
    tax_id = seller.get("tax_id") if isinstance(seller, Mapping) else None
    if isinstance(tax_id, str) and isinstance(number, str):
        return (tax_id, number)
    return None


class SandboxStore:
    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        # Not reset with the store, so an id seen before a reset never names something else.
        self._refs = itertools.count(1)
        self._receipt_ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self._stored: dict[InvoiceKey, StoredInvoice] = {}
        self._receipts: dict[str, Receipt] = {}
        self._pending: dict[InvoiceKey, Receipt] = {}
        self._posts: Counter[InvoiceKey] = Counter()
        self._credited: dict[InvoiceKey, Decimal] = {}

    # --- what the API does ----------------------------------------------------------

    def count_post(self, key: InvoiceKey) -> None:
        self._posts[key] += 1

    def submit(
        self, invoice: object, *, asynchronous: bool, processing_seconds: float | None
    ) -> Outcome:
        """Take in one posted invoice; at most one outcome ever stores a given key."""
        self._settle_due()
        key = invoice_key(invoice)
        if key is None or not isinstance(invoice, Mapping):
            return Rejected(
                check(invoice, self)
                or Rejection("INVALID_FIELD", "The invoice has no identity.", None)
            )
        if key in self._stored:
            return AlreadyExists(self._stored[key])
        if key in self._pending:
            return Processing(self._pending[key])
        now = self.clock()
        if asynchronous:
            settles_at = (
                None if processing_seconds is None else now + timedelta(seconds=processing_seconds)
            )
            receipt = Receipt(f"RCPT{next(self._receipt_ids):012d}", key, invoice, now, settles_at)
            self._receipts[receipt.receipt_id] = self._pending[key] = receipt
            return Processing(receipt)
        rejection = check(invoice, self)
        if rejection is not None:
            return Rejected(rejection)
        return Accepted(self._store(key, invoice, now))

    def receipt(self, receipt_id: str) -> Receipt | None:
        self._settle_due()
        return self._receipts.get(receipt_id)

    def listing(
        self, seller_tax_id: str, first: date | None, last: date | None
    ) -> list[StoredInvoice]:
        """One seller's invoices issued in [first, last], in a stable order."""
        self._settle_due()
        low, high = (first or date.min).isoformat(), (last or date.max).isoformat()
        found = [
            s
            for s in self._stored.values()
            if s.seller_tax_id == seller_tax_id and low <= s.issue_date <= high
        ]
        return sorted(found, key=lambda s: (s.issue_date, s.invoice_number))

    # --- what the rules look up ---------------------------------------------------------

    def original(self, seller_tax_id: str, invoice_number: str) -> Mapping[str, Any] | None:
        stored = self._stored.get((seller_tax_id, invoice_number))
        return None if stored is None else stored.invoice

    def credited(self, seller_tax_id: str, invoice_number: str) -> Decimal:
        return self._credited.get((seller_tax_id, invoice_number), Decimal(0))

    # --- what a test asks -----------------------------------------------------------

    def stored(self, key: InvoiceKey) -> StoredInvoice | None:
        self._settle_due()
        return self._stored.get(key)

    def stored_count(self) -> int:
        self._settle_due()
        return len(self._stored)

    def post_count(self, key: InvoiceKey) -> int:
        return self._posts[key]

    def post_counts(self) -> dict[InvoiceKey, int]:
        return dict(self._posts)

    def snapshot(self) -> Snapshot:
        self._settle_due()
        return Snapshot(
            stored={
                k: replace(s, invoice=copy.deepcopy(s.invoice)) for k, s in self._stored.items()
            },
            receipts={i: replace(r) for i, r in self._receipts.items()},
            post_counts=dict(self._posts),
        )

    # --- inside -------------------------------------------------------------------------

    def _store(self, key: InvoiceKey, invoice: Mapping[str, Any], at: datetime) -> StoredInvoice:
        ref = f"SBX{at.astimezone(_BEIJING):%Y%m%d}{next(self._refs):010d}"
        stored = self._stored[key] = StoredInvoice(key[0], key[1], ref, at, invoice)
        original = invoice.get("original_invoice_number")
        if invoice.get("kind") == "red" and isinstance(original, str):
            reversed_key = (key[0], original)
            spent = abs(money(invoice.get("total_with_tax")) or Decimal(0))
            self._credited[reversed_key] = self.credited(*reversed_key) + spent
        return stored

    def _settle_due(self) -> None:
        now = self.clock()
        due = [
            r for r in self._pending.values() if r.settles_at is not None and r.settles_at <= now
        ]
        # In settling order, so an original settles before a red invoice that reverses it.
        for receipt in sorted(due, key=lambda r: (r.settles_at, r.receipt_id)):
            del self._pending[receipt.key]
            assert receipt.settles_at is not None
            rejection = check(receipt.invoice, self)
            if rejection is not None:
                receipt.status, receipt.rejection = "REJECTED", rejection
            else:
                receipt.status = "ACCEPTED"
                receipt.stored = self._store(receipt.key, receipt.invoice, receipt.settles_at)
