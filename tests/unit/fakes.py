"""In-memory stand-ins for the processor's ports: ledger, platform, output."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from streams.errors import LedgerUnavailableError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State, check_transition
from streams.platform.results import Accepted, Processing, StoredInvoice
from streams.processor.ports import OutMessage

Answer = Accepted | Processing | Exception


class FakeLedger:
    def __init__(self) -> None:
        self.rows: dict[InvoiceKey, InvoiceRecord] = {}
        self.history: list[Change] = []
        self.payloads: dict[InvoiceKey, bytes] = {}
        self.unavailable_for = 0  # calls that fail before the database "returns"
        self.credit_queries = 0

    def _maybe_down(self) -> None:
        if self.unavailable_for:
            self.unavailable_for -= 1
            raise LedgerUnavailableError("connection refused")

    async def load(self, keys: Sequence[InvoiceKey]) -> dict[InvoiceKey, InvoiceRecord]:
        self._maybe_down()
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def get(self, key: InvoiceKey) -> InvoiceRecord | None:
        self._maybe_down()
        return self.rows.get(key)

    async def credited(self, originals: Sequence[InvoiceKey]) -> dict[InvoiceKey, Decimal]:
        self._maybe_down()
        self.credit_queries += 1
        credit = dict.fromkeys(originals, Decimal(0))
        for r in self.rows.values():
            original = InvoiceKey(r.key.seller_tax_id, r.original_invoice_number or "")
            if r.state == State.CONFIRMED and original in credit:
                credit[original] += abs(r.total_with_tax or 0)
        return credit

    async def apply(self, changes: Sequence[Change]) -> set[InvoiceKey]:
        """Like ``Ledger.apply``: a change whose row moved on meanwhile is skipped."""
        self._maybe_down()
        lost: set[InvoiceKey] = set()
        for change in changes:
            if not change.history_only:
                current = self.rows.get(change.record.key)
                state = None if current is None else current.state
                check_transition(change.previous, change.record.state, invoice_key="k")
                if state != change.previous or state == State.CONFIRMED:
                    lost.add(change.record.key)
                    continue
                self.rows[change.record.key] = change.record._replace(
                    created_at=current.created_at if current else datetime.now(UTC)
                )
            if change.payload is not None:
                self.payloads[change.record.key] = change.payload
            self.history.append(change)
        return lost


class FakePlatform:
    """Answers each invoice number from a script; the default is a plain 201.

    ``stored`` is what the platform holds, by invoice number: a 201 stores, and a
    test stores by hand what an in-doubt POST stored before the connection dropped.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[Answer]] = {}
        self.posts: list[str] = []
        self.receipts: dict[str, list[Answer]] = {}
        self.stored: dict[str, StoredInvoice] = {}
        #: errors the GET of an invoice number answers, in turn, before the truth
        self.lookup_errors: dict[str, list[Exception]] = {}
        self.lookups: list[str] = []
        #: when set, every POST waits for it before it is answered
        self.hold: asyncio.Event | None = None
        #: a POST of one of these invoice numbers waits for its event before it is answered
        self.held: dict[str, asyncio.Event] = {}
        #: set on every POST
        self.changed = asyncio.Event()

    async def submit(
        self,
        invoice: Mapping[str, Any],
        body: bytes | None = None,
        *,
        body_sha256: str | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Accepted | Processing:
        number = str(invoice["invoice_number"])
        # The digest stands in for hashing the body when it is signed: it must be the body's.
        assert body_sha256 is None or (
            body is not None and hashlib.sha256(body).hexdigest() == body_sha256
        ), f"body_sha256 of {number} is not the SHA-256 of its body"
        self.posts.append(number)
        self.changed.set()
        if on_sent is not None:
            on_sent()
        if self.hold is not None:
            await self.hold.wait()
        if number in self.held:
            await self.held[number].wait()
        answers = self.script.get(number)
        answer: Answer = answers.pop(0) if answers else Accepted(f"REF-{number}", datetime.now(UTC))
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, Accepted):
            self.store(invoice, answer.platform_ref)
        return answer

    def store(self, invoice: Mapping[str, Any], platform_ref: str) -> None:
        number = str(invoice["invoice_number"])
        self.stored[number] = StoredInvoice(platform_ref, datetime.now(UTC), dict(invoice))

    async def receipt(self, receipt_id: str) -> Accepted | Processing:
        answer = self.receipts[receipt_id].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get_invoice(self, seller_tax_id: str, invoice_number: str) -> StoredInvoice | None:
        self.lookups.append(invoice_number)
        errors = self.lookup_errors.get(invoice_number)
        if errors:
            raise errors.pop(0)
        return self.stored.get(invoice_number)


class FakeOutput:
    def __init__(self) -> None:
        self.messages: list[OutMessage] = []
        #: what the next publish raises instead of sending, as a broker that refuses it
        self.refuse: Exception | None = None
        #: set on every publish
        self.changed = asyncio.Event()

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        self.changed.set()
        refused, self.refuse = self.refuse, None
        if refused is not None:
            raise refused
        self.messages.extend(messages)

    def on(self, topic: str) -> list[OutMessage]:
        return [m for m in self.messages if m.topic == topic]


async def no_sleep(seconds: float) -> None:
    # Yield to the loop like a real sleep would, without the wait.
    await asyncio.sleep(0)
