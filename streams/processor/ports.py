"""The narrow interfaces the processor needs from the outside world.

The ledger (``streams.ledger.store.Ledger``), the platform client
(``streams.platform.client.PlatformClient``) and the Kafka producer satisfy them;
tests substitute fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.platform.results import Accepted, Processing, StoredInvoice


class LedgerPort(Protocol):
    async def load(self, keys: Sequence[InvoiceKey]) -> dict[InvoiceKey, InvoiceRecord]: ...

    async def get(self, key: InvoiceKey) -> InvoiceRecord | None: ...

    async def credited(self, originals: Sequence[InvoiceKey]) -> dict[InvoiceKey, Decimal]:
        """For each original, the absolute total of the CONFIRMED red-letter invoices
        against it (0 when none): one call for a whole wave."""
        ...

    async def apply(self, changes: Sequence[Change]) -> set[InvoiceKey]:
        """Write ``changes``; returns the keys skipped because another writer changed
        their row first (see ``Ledger.apply``)."""
        ...


class PlatformPort(Protocol):
    async def submit(
        self,
        invoice: Mapping[str, Any],
        body: bytes | None = None,
        *,
        body_sha256: str | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Accepted | Processing: ...

    async def receipt(self, receipt_id: str) -> Accepted | Processing: ...

    async def get_invoice(
        self, seller_tax_id: str, invoice_number: str
    ) -> StoredInvoice | None: ...


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class OutputPort(Protocol):
    async def publish(self, messages: Sequence[OutMessage]) -> None:
        """Send all ``messages`` and return once the broker has acknowledged every one."""
        ...
