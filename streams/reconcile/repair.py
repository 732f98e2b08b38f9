"""Re-driving what reconciliation and the sweep find.

Missing on the platform (confirmed in the ledger): the row goes back to SUBMITTING with
its next attempt due now, and a history entry says why. The worker's loop that finishes
parked invoices (``Ledger.unfinished`` → ``Processor.resume``) then re-posts the stored
payload within ``INVOICE_SYNC_RESUME_INTERVAL`` seconds. CONFIRMED is otherwise final
(``streams.ledger.states``); this is the one deliberate, audited exception, guarded by
``WHERE state = 'CONFIRMED'`` so it never races a worker's own change.

Stuck invoices (the sweep): RECEIVED and SUBMITTING ones have their stored payload
re-published to ``invoices.issued`` (a re-send of a non-final invoice is processed
afresh); PENDING ones have their receipt polled once, through the worker's own poller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.ledger.records import InvoiceRecord
from streams.ledger.store import Ledger
from streams.processor.ports import OutMessage, OutputPort

REDRIVE_REASON = "RECONCILE_REDRIVE"


@dataclass
class Redrive:
    redriven: list[str] = field(default_factory=list)
    #: (invoice number, why not)
    skipped: list[tuple[str, str]] = field(default_factory=list)


async def redrive_missing(ledger: Ledger, seller_tax_id: str, numbers: Sequence[str]) -> Redrive:
    """Send confirmed-but-missing invoices again (see the module docstring)."""
    result = Redrive()
    async with ledger.connection() as conn:
        for number in numbers:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "SELECT state, platform_ref, payload IS NULL AS gone FROM invoices "
                    "WHERE seller_tax_id = $1 AND invoice_number = $2 FOR UPDATE",
                    seller_tax_id, number,
                )  # fmt: skip
                why_not = _why_not(row)
                if why_not is not None:
                    result.skipped.append((number, why_not))
                    continue
                assert row is not None
                await conn.execute(
                    "UPDATE invoices SET state = 'SUBMITTING', next_attempt_at = now(), "
                    "failures = 0, error_code = NULL, error_message = NULL, error_field = NULL, "
                    "platform_ref = NULL, accepted_at = NULL, confirmed_at = NULL, "
                    "updated_at = now() WHERE seller_tax_id = $1 AND invoice_number = $2",
                    seller_tax_id, number,
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO invoice_history (seller_tax_id, invoice_number, from_state, "
                    "to_state, reason_code, detail, worker_id) "
                    "VALUES ($1, $2, 'CONFIRMED', 'SUBMITTING', $3, $4, 'cli')",
                    seller_tax_id, number, REDRIVE_REASON,
                    f"missing on the platform (was {row['platform_ref']}); sending it again",
                )  # fmt: skip
                result.redriven.append(number)
    return result


def _why_not(row: Any) -> str | None:
    if row is None:
        return "no longer in the ledger"
    if row["state"] != "CONFIRMED":
        return f"now {row['state']}, not CONFIRMED"
    if row["gone"]:
        return "its payload was dropped by retention; have billing send it again"
    return None


async def republish(
    ledger: Ledger, output: OutputPort, topic: str, records: Sequence[InvoiceRecord]
) -> Redrive:
    """Publish each invoice's stored issued event again, keyed as billing keys it."""
    result = Redrive()
    messages: list[OutMessage] = []
    for record in records:
        payload = await ledger.payload(record.key)
        if not payload:
            result.skipped.append((str(record.key), "no stored payload"))
            continue
        messages.append(OutMessage(topic, str(record.key).encode(), payload))
        result.redriven.append(str(record.key))
    await output.publish(messages)
    return result
