"""The publisher API for billing systems: validated, correctly keyed, acknowledged.

::

    from streams.client import InvoicePublisher
    from streams.settings import Settings

    async with InvoicePublisher(Settings()) as publisher:
        sent = await publisher.invoice_issued(invoice)   # raises before sending if invalid
        print(sent.key, sent.partition, sent.offset)      # the broker has it (acks=all)

``invoice`` is the ``invoice`` object of an ``invoice.issued`` event
(``shared/specs/events.md``). Decimal and date values may be given as
``Decimal``/``date``; they are written as the strings the contract asks for.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.errors import MalformedEventError, SchemaViolationError, ValidationFailedError
from streams.events.schemas import validate_event
from streams.kafka.clients import producer as make_producer
from streams.settings import Settings
from streams.validation.rules import DomainRules
from streams.validation.today import beijing_today
from streams.validation.validate import Violation, validate_invoice

__all__ = [
    "DEFAULT_SOURCE",
    "InvoicePublisher",
    "PublishedEvent",
    "build_event",
    "check_event",
    "event_key",
    "validate_issued",
]

ISSUED = "invoice.issued"
DEFAULT_SOURCE = "invoice-sync-client"
#: violations quoted in a ValidationFailedError message before "and N more"
_QUOTED = 5


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """What the broker acknowledged."""

    topic: str
    partition: int
    offset: int
    key: str
    #: None only for ``publish_raw`` of a value that is not an event
    event_id: str | None
    timestamp: datetime


def _plain(value: object) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("datetimes must be timezone-aware")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_ready(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-JSON copy: Decimal → "12.50", date → "2026-11-20"."""
    try:
        copy = orjson.loads(orjson.dumps(dict(invoice), default=_plain))
    except TypeError as exc:
        raise SchemaViolationError(f"the invoice cannot be written as JSON: {exc}") from exc
    if not isinstance(copy, dict):
        raise SchemaViolationError("the invoice must be an object", field="invoice")
    return copy


def build_event(
    invoice: Mapping[str, Any],
    *,
    event_id: str | None = None,
    source: str = DEFAULT_SOURCE,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``invoice.issued`` v1 event around ``invoice`` (not validated)."""
    moment = occurred_at or datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": ISSUED,
        "schema_version": 1,
        "occurred_at": moment.isoformat(),
        "source": source,
        "invoice": _json_ready(invoice),
    }


def event_key(event: Mapping[str, Any]) -> str:
    """``{seller_tax_id}:{invoice_number}`` of a schema-valid event."""
    invoice = event["invoice"]
    return f"{invoice['seller']['tax_id']}:{invoice['invoice_number']}"


def _schema_problem(event: object) -> SchemaViolationError | None:
    if not isinstance(event, Mapping):
        return SchemaViolationError("an event must be a JSON object")
    if event.get("event_type") != ISSUED:
        return SchemaViolationError(
            f"event_type must be {ISSUED!r}, got {event.get('event_type')!r}",
            field="event_type",
        )
    try:
        validate_event(ISSUED, dict(event))
    except SchemaViolationError as exc:
        return exc
    try:
        occurred: datetime | None = datetime.fromisoformat(str(event["occurred_at"]))
    except ValueError:
        occurred = None
    if occurred is None or occurred.tzinfo is None:
        return SchemaViolationError(
            "occurred_at must be an RFC 3339 timestamp with a UTC offset", field="occurred_at"
        )
    return None


def check_event(event: object, rules: DomainRules, *, today: date) -> list[Violation]:
    """Every problem the worker would fail this event for: the first schema problem
    (then nothing else is checked), or all domain-rule violations. Empty: valid."""
    problem = _schema_problem(event)
    if problem is not None:
        return [Violation(problem.field or "event", problem.message)]
    assert isinstance(event, Mapping)
    return validate_invoice(event["invoice"], rules, today=today)


def validate_issued(event: object, rules: DomainRules, *, today: date) -> None:
    """Raise ``SchemaViolationError`` or ``ValidationFailedError`` (``field`` set to the
    first offending path) when the worker would fail ``event``."""
    problem = _schema_problem(event)
    if problem is not None:
        raise problem
    assert isinstance(event, Mapping)
    key = event_key(event)
    violations = validate_invoice(event["invoice"], rules, today=today)
    if not violations:
        return
    message = "; ".join(f"{v.field}: {v.message}" for v in violations[:_QUOTED])
    if len(violations) > _QUOTED:
        message += f" (and {len(violations) - _QUOTED} more)"
    raise ValidationFailedError(message, field=violations[0].field, invoice_key=key)


class InvoicePublisher:
    """Publishes ``invoice.issued`` events to ``settings.issued_topic``.

    An async context manager: the Kafka producer starts on enter and is flushed and
    stopped on exit. Each ``invoice_issued`` returns once the broker acknowledged the
    event (``acks=all``); an error from the broker is raised, never swallowed.
    """

    def __init__(self, settings: Settings, *, today: date | None = None) -> None:
        self.settings = settings
        self.rules = DomainRules.from_settings(settings)
        self._today = today
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> InvoicePublisher:
        producer = make_producer(self.settings)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a failed start leaves connections to close
            raise
        self._producer = producer
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def today(self) -> date:
        return self._today or beijing_today()

    async def invoice_issued(
        self,
        invoice: Mapping[str, Any],
        *,
        event_id: str | None = None,
        source: str = DEFAULT_SOURCE,
        occurred_at: datetime | None = None,
    ) -> PublishedEvent:
        """Build, validate and send one ``invoice.issued`` event; wait for the ack.

        Raises ``SchemaViolationError`` / ``ValidationFailedError`` (with ``field``)
        before anything is sent when the worker would reject the invoice.
        """
        event = build_event(invoice, event_id=event_id, source=source, occurred_at=occurred_at)
        return await self.publish_event(event)

    async def publish_event(self, event: Mapping[str, Any]) -> PublishedEvent:
        """Validate and send a complete ``invoice.issued`` event; wait for the ack."""
        validate_issued(event, self.rules, today=self.today())
        key = event_key(event)
        value = orjson.dumps(dict(event))
        if len(value) > self.settings.max_message_bytes:
            raise MalformedEventError(
                f"the event is {len(value)} bytes, over the "
                f"{self.settings.max_message_bytes}-byte limit; split the invoice",
                invoice_key=key,
            )
        return await self.publish_raw(key.encode(), value)

    async def publish_raw(
        self, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> PublishedEvent:
        """Send bytes as they are (replay, import internals): no validation."""
        if self._producer is None:
            raise RuntimeError("use InvoicePublisher as `async with InvoicePublisher(...)`")
        topic = self.settings.issued_topic
        meta = await self._producer.send_and_wait(
            topic, value, key=key, headers=list(headers) or None
        )
        return PublishedEvent(
            topic=topic,
            partition=meta.partition,
            offset=meta.offset,
            key="" if key is None else key.decode("utf-8", "replace"),
            event_id=_event_id(value),
            timestamp=(
                datetime.fromtimestamp(meta.timestamp / 1000, UTC)
                if meta.timestamp and meta.timestamp > 0
                else datetime.now(UTC)
            ),
        )


def _event_id(value: bytes) -> str | None:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    event_id = obj.get("event_id") if isinstance(obj, dict) else None
    return event_id if isinstance(event_id, str) else None
