"""Raw Kafka bytes → an ``IssuedEvent``, or the reason it can never be one."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import orjson

from streams.errors import MalformedEventError, SchemaViolationError, ValidationFailedError
from streams.events import jsonbytes
from streams.events.schemas import validate_event
from streams.ledger.records import InvoiceKey
from streams.processor.records import IssuedEvent, RawRecord, summary_of
from streams.validation.rules import DomainRules
from streams.validation.validate import validate_invoice

ISSUED = "invoice.issued"
#: how many violations a failure reason lists before "and N more"
_REASON_VIOLATIONS = 3


def _canonical(invoice: dict[str, Any]) -> bytes:
    """The invoice as JSON with sorted keys: what its content hash is taken over, and
    the body sent to the platform (one encoding serves both; key order means nothing
    to a JSON reader)."""
    return jsonbytes.dumps(invoice, sorted_keys=True)


def content_hash(invoice: dict[str, Any]) -> str:
    return _hash_of(_canonical(invoice))


def _hash_of(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


class Decoder:
    def __init__(self, rules: DomainRules, *, max_bytes: int, today: Callable[[], date]) -> None:
        self._rules = rules
        self._max_bytes = max_bytes
        self._today = today

    def decode(self, raw: RawRecord) -> IssuedEvent:
        """Raises ``MalformedEventError`` or ``SchemaViolationError``; domain-rule
        failures come back on ``IssuedEvent.violation`` because the invoice's identity
        is known and the ledger should record them."""
        if len(raw.value) > self._max_bytes:
            raise MalformedEventError(
                f"message is {len(raw.value)} bytes, over the {self._max_bytes}-byte limit"
            )
        try:
            obj = orjson.loads(raw.value)
        except orjson.JSONDecodeError as exc:
            raise MalformedEventError(f"not valid UTF-8 JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise MalformedEventError(f"expected a JSON object, got {type(obj).__name__}")
        if obj.get("event_type") != ISSUED:
            raise SchemaViolationError(
                f"event_type must be {ISSUED!r}, got {obj.get('event_type')!r}",
                field="event_type",
            )
        validate_event(ISSUED, obj)
        invoice: dict[str, Any] = obj["invoice"]
        key = InvoiceKey(invoice["seller"]["tax_id"], invoice["invoice_number"])
        try:
            occurred_at = datetime.fromisoformat(obj["occurred_at"])
        except ValueError as exc:
            raise SchemaViolationError(
                f"occurred_at is not an RFC 3339 timestamp: {obj['occurred_at']!r}",
                field="occurred_at",
                invoice_key=str(key),
            ) from exc
        if occurred_at.tzinfo is None:
            raise SchemaViolationError(
                "occurred_at needs a UTC offset", field="occurred_at", invoice_key=str(key)
            )
        violations = validate_invoice(invoice, self._rules, today=self._today())
        violation = None
        if violations:
            reason = "; ".join(f"{v.field}: {v.message}" for v in violations[:_REASON_VIOLATIONS])
            if len(violations) > _REASON_VIOLATIONS:
                reason += f" (and {len(violations) - _REASON_VIOLATIONS} more)"
            violation = ValidationFailedError(
                reason, field=violations[0].field, invoice_key=str(key)
            )
        canonical = _canonical(invoice)
        # Read once here: the pipeline asks for it several times per event and wave.
        original = (
            InvoiceKey(key.seller_tax_id, str(invoice.get("original_invoice_number")))
            if invoice.get("kind") == "red"
            else None
        )
        return IssuedEvent(
            raw=raw,
            event_id=str(obj["event_id"]),
            occurred_at=occurred_at,
            key=key,
            summary=summary_of(invoice),
            body=canonical,
            content_hash=_hash_of(canonical),
            violation=violation,
            original=original,
        )
