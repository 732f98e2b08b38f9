"""The output messages for an outcome: a confirmation, or a failure plus its dead letter.

Each outcome is also the invoice's one INFO log line, with ``invoice_key``,
``event_id`` and ``reason_code`` as fields (see :mod:`streams.observability.logs`),
so ``grep '"invoice_key":"<key>"'`` follows an invoice across workers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from streams.events.outputs import confirmed_event, encode, failed_event
from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.observability.metrics import Metrics
from streams.processor.ports import OutMessage
from streams.processor.records import RawRecord
from streams.retry.deadletter import H_REPLAYED_FROM, DeadLetter

log = logging.getLogger(__name__)


class Topics:
    def __init__(self, issued: str, confirmed: str, failed: str, dlq: str) -> None:
        self.issued = issued
        self.confirmed = confirmed
        self.failed = failed
        self.dlq = dlq


class Messages:
    """Builds the output messages, and counts them in the metrics as it does."""

    def __init__(self, topics: Topics, worker_id: str, metrics: Metrics | None = None) -> None:
        self.topics = topics
        self._worker_id = worker_id
        self._metrics = metrics or Metrics()

    def confirmation(
        self, record: InvoiceRecord, source_event_id: str, *, fresh: bool = True
    ) -> OutMessage:
        """``fresh``: just confirmed (not a re-send answered from the ledger)."""
        assert record.platform_ref is not None
        assert record.accepted_at is not None
        # A fresh confirmation happens when the record says it was confirmed; the time
        # is taken once for the record, the event and the metric.
        now = record.confirmed_at if fresh and record.confirmed_at else datetime.now(UTC)
        if fresh and record.issued_at is not None:
            self._metrics.confirmed((now - record.issued_at).total_seconds())
        # ~2,000 of these a second: build nothing when INFO is off.
        if log.isEnabledFor(logging.INFO):
            if fresh:
                message, code = "confirmed %s as %s", None
            else:
                message, code = "re-send of %s answered from the ledger: %s", "DUPLICATE_RESEND"
            fields = {
                "invoice_key": str(record.key),
                "event_id": source_event_id,
                "reason_code": code,
            }
            log.info(message, record.key, record.platform_ref, extra=fields)
        event = confirmed_event(
            invoice_number=record.key.invoice_number,
            seller_tax_id=record.key.seller_tax_id,
            platform_ref=record.platform_ref,
            accepted_at=record.accepted_at,
            source_event_id=source_event_id,
            attempts=record.attempts,
            occurred_at=now,
        )
        return OutMessage(self.topics.confirmed, str(record.key).encode(), encode(event))

    def failure(
        self,
        raw: RawRecord,
        identity: tuple[InvoiceKey, str] | None,
        code: str,
        reason: str,
        field: str | None,
        *,
        retryable: bool,
        attempts: int,
        exception_class: str,
        first_failure_at: datetime | None = None,
    ) -> list[OutMessage]:
        """``invoice.failed`` plus the dead letter: every failure lands in the DLQ.

        ``identity`` is the invoice key and source event id, when the message had them.
        """
        self._metrics.failed(code)
        self._metrics.dead_lettered(code)
        now = datetime.now(UTC)
        key, event_id = identity if identity is not None else (None, None)
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {"reason_code": code}
            if key is not None:
                fields.update(invoice_key=str(key), event_id=event_id)
            else:
                # Nothing decoded: the record's position is what finds it.
                fields.update(topic=raw.topic, partition=raw.partition, offset=raw.offset)
            log.info("failed %s (%s): %s; dead-lettered to %s", key or "an undecodable record",
                     code, reason, self.topics.dlq, extra=fields)  # fmt: skip
        failed = failed_event(
            invoice_number=None if key is None else key.invoice_number,
            seller_tax_id=None if key is None else key.seller_tax_id,
            reason_code=code, reason=reason, field=field, retryable=retryable,
            attempts=attempts, source_event_id=event_id,
        )  # fmt: skip
        letter = DeadLetter(
            key=raw.key, value=raw.value, reason_code=code, reason=reason,
            exception_class=exception_class, source_topic=raw.topic,
            source_partition=raw.partition, source_offset=raw.offset, attempts=attempts,
            first_failure_at=first_failure_at or now, last_failure_at=now,
            worker_id=self._worker_id, field=field,
            replayed_from=raw.header(H_REPLAYED_FROM),
        )  # fmt: skip
        return [
            OutMessage(self.topics.failed, raw.key, encode(failed)),
            OutMessage(self.topics.dlq, raw.key, raw.value, letter.headers()),
        ]

    def parked(self, key: InvoiceKey, event_id: str | None, reason_code: str, detail: str) -> None:
        """An invoice left in the ledger for later (``RETRY_LATER``, ``WAITING_FOR_ORIGINAL``):
        no message goes out, but the log says where it stopped."""
        fields = {"invoice_key": str(key), "event_id": event_id, "reason_code": reason_code}
        log.info("parked %s (%s): %s", key, reason_code, detail, extra=fields)
