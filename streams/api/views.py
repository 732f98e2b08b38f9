"""JSON views of ledger records, shared by the HTTP API and the CLI's ``--json``, and the
words both use to say what a person should do next about an invoice."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import KafkaError

from streams.dlq.reader import DeadLetterRecord, dead_letters_of
from streams.ledger.records import HistoryEntry, InvoiceRecord
from streams.ledger.states import State
from streams.ledger.store import Ledger
from streams.settings import Settings


def record_view(record: InvoiceRecord) -> dict[str, Any]:
    return {
        "seller_tax_id": record.key.seller_tax_id,
        "invoice_number": record.key.invoice_number,
        "state": record.state.value,
        "kind": record.kind,
        "issue_date": record.issue_date.isoformat() if record.issue_date else None,
        "total_with_tax": None if record.total_with_tax is None else str(record.total_with_tax),
        "attempts": record.attempts,
        "platform_ref": record.platform_ref,
        "accepted_at": record.accepted_at.isoformat() if record.accepted_at else None,
        "receipt_id": record.receipt_id,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "error_field": record.error_field,
        "source_event_id": record.source_event_id,
        "issued_at": record.issued_at.isoformat() if record.issued_at else None,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "updated_at": record.updated_at.isoformat() if record.updated_at else None,
        "confirmed_at": record.confirmed_at.isoformat() if record.confirmed_at else None,
    }


def history_view(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "at": entry.at.isoformat(),
        "from_state": None if entry.from_state is None else entry.from_state.value,
        "to_state": entry.to_state.value,
        "event_id": entry.event_id,
        "reason_code": entry.reason_code,
        "detail": entry.detail,
        "worker_id": entry.worker_id,
    }


#: history reasons that are no failure (and so left no dead letter)
_NOT_DEAD_LETTERED = {"DUPLICATE_RESEND", "REPLAY", "RESUME", "RETRY_LATER",
                      "WAITING_FOR_ORIGINAL", "RECONCILE_REDRIVE"}  # fmt: skip


def dead_letter(record: InvoiceRecord, history: list[HistoryEntry]) -> dict[str, Any] | None:
    """Where to find this invoice's dead letter: every failure is dead-lettered, also a
    rejected re-send of an invoice that stays confirmed."""
    code = record.error_code if record.state == State.FAILED else None
    if code is None:
        rejected_resends = [
            h.reason_code for h in history
            if h.from_state == h.to_state == State.CONFIRMED
            and h.reason_code and h.reason_code not in _NOT_DEAD_LETTERED
        ]  # fmt: skip
        code = rejected_resends[-1] if rejected_resends else None
    if code is None:
        return None
    return {
        "reason_code": code,
        "command": f"invoice-sync dlq list --invoice {record.key.invoice_number}",
    }


def next_step(record: InvoiceRecord) -> str:
    if record.state == State.CONFIRMED:
        return f"Nothing to do: the platform holds it as {record.platform_ref}."
    if record.state == State.PENDING:
        return (
            f"The platform took it in (receipt {record.receipt_id}) and is still checking it; "
            "the worker polls the receipt. If it stays pending for hours, ask the platform "
            "about the receipt."
        )
    if record.state in (State.RECEIVED, State.SUBMITTING):
        return (
            "It is being sent. If it stays like this, make sure a worker is running: a worker "
            "resumes unfinished invoices at start."
        )
    field = f" (field {record.error_field})" if record.error_field else ""
    if record.error_code in ("RETRIES_EXHAUSTED", "ORIGINAL_NOT_CONFIRMED"):
        return (
            f"It failed with {record.error_code}{field}, which a retry can fix: once the cause "
            "is gone, replay it from the dead-letter topic."
        )
    return (
        f"It was rejected with {record.error_code}{field}: {record.error_message} Correct the "
        "invoice in the billing system and send it again."
    )


def lookup_view(record: InvoiceRecord, history: list[HistoryEntry]) -> dict[str, Any]:
    """One invoice as ``invoice-sync status`` and ``GET /invoices/{seller}/{number}`` show
    it: the record, every state change, where its dead letter is, and the next step."""
    view = record_view(record)
    view["history"] = [history_view(h) for h in history]
    view["dead_letter"] = dead_letter(record, history)
    view["next_step"] = next_step(record)
    return view


def letter_view(record: DeadLetterRecord, topic: str) -> dict[str, Any]:
    """A dead letter as a lookup shows it: where it is, why, and when (no payload)."""
    return {
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "position": record.position,
        "reason_code": record.reason_code,
        "reason": record.reason,
        "field": record.field,
        "failed_at": record.failed_at.isoformat(),
    }


async def dead_letters_view(
    settings: Settings, invoice_number: str, seller_tax_id: str | None
) -> dict[str, Any]:
    """The invoice's records on the DLQ topic, and a note when the search was partial
    (a large DLQ) or impossible (Kafka away: the ledger's answer still stands)."""
    try:
        search = await dead_letters_of(settings, invoice_number, seller_tax_id)
    except (KafkaError, OSError) as exc:
        return {
            "records": [],
            "note": f"the DLQ topic could not be read from {settings.kafka_bootstrap} "
            f"({type(exc).__name__}); the ledger's answer still stands. The embedded local "
            "broker keeps messages in memory only, so after `make run` they are gone.",
        }
    return {
        "records": [letter_view(r, settings.dlq_topic) for r in search.records],
        "note": search.note,
    }


async def invoice_lookup(
    ledger: Ledger, settings: Settings, record: InvoiceRecord
) -> dict[str, Any]:
    """One invoice as ``invoice-sync status`` and ``GET /invoices/{seller}/{number}`` show
    it; when it was dead-lettered, with the DLQ records themselves."""
    view = lookup_view(record, await ledger.history(record.key))
    letter = view["dead_letter"]
    if letter is not None:
        key = record.key
        letter.update(await dead_letters_view(settings, key.invoice_number, key.seller_tax_id))
    return view
