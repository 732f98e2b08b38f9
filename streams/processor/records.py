"""What the processor consumes: a Kafka record, and an issued event decoded from one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.errors import ValidationFailedError
from streams.ledger.records import InvoiceKey


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class IssuedEvent:
    raw: RawRecord
    event_id: str
    occurred_at: datetime
    key: InvoiceKey
    invoice: dict[str, Any]
    #: the invoice object as POSTed to the platform
    body: bytes
    #: identical content ⇔ identical hash; decides duplicate vs conflict
    content_hash: str
    #: domain-rule failures, if any: the event is well-formed but must not be sent
    violation: ValidationFailedError | None = None
