"""JSON views of ledger records, shared by the HTTP API and the CLI's ``--json``."""

from __future__ import annotations

from typing import Any

from streams.ledger.records import HistoryEntry, InvoiceRecord


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
