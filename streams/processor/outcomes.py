"""What a delivery result means: the ledger change to write and the output events to
publish (a confirmation, a failure with its dead letter, or nothing yet)."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.ledger.records import Change, InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import Accepted
from streams.processor.delivery import Deferred, Delivered, Undeliverable
from streams.processor.messages import Messages
from streams.processor.ports import OutMessage
from streams.processor.records import IssuedEvent
from streams.processor.redletter import WAITING_FOR_ORIGINAL, Parked


def outcome(
    messages: Messages, event: IssuedEvent, record: InvoiceRecord,
    result: Delivered | Undeliverable | Deferred | Parked, out: list[OutMessage],
) -> Change:  # fmt: skip
    if isinstance(result, Deferred):
        parked = record._replace(
            attempts=result.posts,
            failures=result.failures,
            next_attempt_at=result.retry_at,
            error_message=result.last_error,
        )
        detail = f"next attempt at {result.retry_at.isoformat()}: {result.last_error}"
        messages.parked(event.key, event.event_id, "RETRY_LATER", detail)
        return Change(parked, State.SUBMITTING, event.event_id, "RETRY_LATER", detail)
    if isinstance(result, Parked):
        messages.parked(event.key, event.event_id, WAITING_FOR_ORIGINAL,
                              "its original was not accepted in this batch")  # fmt: skip
        return Change(record._replace(state=State.RECEIVED), State.SUBMITTING,
                      event.event_id, WAITING_FOR_ORIGINAL)  # fmt: skip
    if isinstance(result, Undeliverable):
        out += failure_of(messages, event, result, result.posts)
        return failed(record._replace(attempts=result.posts), result.code,
                            result.message, result.field)  # fmt: skip
    if isinstance(result.result, Accepted):
        confirmed = record._replace(
            state=State.CONFIRMED, attempts=result.posts,
            platform_ref=result.result.platform_ref, accepted_at=result.result.accepted_at,
            confirmed_at=datetime.now(UTC), error_code=None, error_message=None,
            error_field=None,
        )  # fmt: skip
        out.append(messages.confirmation(confirmed, event.event_id))
        return Change(confirmed, State.SUBMITTING, event.event_id,
                      detail=f"platform_ref {confirmed.platform_ref}")  # fmt: skip
    pending = record._replace(
        state=State.PENDING, attempts=result.posts, receipt_id=result.result.receipt_id
    )
    return Change(pending, State.SUBMITTING, event.event_id,
                  detail=f"platform receipt {pending.receipt_id} is processing")  # fmt: skip


def failed(record: InvoiceRecord, code: str, message: str, field: str | None) -> Change:
    failed = record._replace(state=State.FAILED, error_code=code, error_message=message,
                     error_field=field)  # fmt: skip
    return Change(failed, record.state, record.source_event_id, code, message)


def failure_of(
    messages: Messages, event: IssuedEvent, result: Undeliverable, attempts: int
) -> list[OutMessage]:
    return messages.failure(
        event.raw, (event.key, event.event_id), result.code, result.message, result.field,
        retryable=result.retryable, attempts=attempts, exception_class=result.exception_class,
        first_failure_at=result.first_failure_at,
    )  # fmt: skip
