"""The ledger gauges against real PostgreSQL: exact unfinished counts, parked invoices,
and ages that run from when an invoice entered its state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.ledger.store import Ledger

from .chaos import fresh_database
from .conftest import Services
from .conftest import fresh_invoice_key as _key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def own_ledger(services: Services) -> AsyncIterator[Ledger]:
    """A database of its own: the summary is over the whole ledger."""
    url = await fresh_database(services.database_url, f"gauges_{uuid.uuid4().hex[:8]}")
    async with Ledger(url, worker_id="test") as ledger:
        await ledger.migrate()
        yield ledger


def _record(key: InvoiceKey, state: State, **kw: object) -> InvoiceRecord:
    return InvoiceRecord(key=key, state=state, content_hash="h", **kw)  # type: ignore[arg-type]


async def _backdate(ledger: Ledger, key: InvoiceKey, column: str, seconds: int) -> None:
    """Move an invoice's history (or a column of its row) into the past."""
    async with ledger.connection() as conn, conn.transaction():
        if column == "history":
            # The trigger guards production history; here it is test data, in a database
            # of its own.
            await conn.execute("ALTER TABLE invoice_history DISABLE TRIGGER USER")
            await conn.execute(
                "UPDATE invoice_history SET at = at - make_interval(secs => $3) "
                "WHERE seller_tax_id = $1 AND invoice_number = $2",
                key.seller_tax_id, key.invoice_number, seconds,
            )  # fmt: skip
            await conn.execute("ALTER TABLE invoice_history ENABLE TRIGGER USER")
        else:
            await conn.execute(
                f"UPDATE invoices SET {column} = {column} - make_interval(secs => $3) "
                "WHERE seller_tax_id = $1 AND invoice_number = $2",
                key.seller_tax_id, key.invoice_number, seconds,
            )  # fmt: skip


async def test_summary_counts_parks_and_ages(own_ledger: Ledger) -> None:
    ledger = own_ledger
    empty = await ledger.state_summary(final=True)
    assert empty.unfinished == {"RECEIVED": 0, "SUBMITTING": 0, "PENDING": 0}
    assert empty.final == {"CONFIRMED": 0, "FAILED": 0}
    assert (empty.parked, empty.oldest_unfinished_seconds, empty.oldest_waiting_seconds) == (
        0, 0.0, 0.0)  # fmt: skip

    replayed, pending, waiting, backoff, done, failed = (_key() for _ in range(6))
    later = datetime.now(UTC) + timedelta(minutes=5)
    await ledger.apply([
        Change(_record(replayed, State.FAILED, error_code="X"), None, "e"),
        Change(_record(pending, State.SUBMITTING), None, "e"),
        Change(_record(waiting, State.RECEIVED), None, "e"),
        Change(_record(backoff, State.SUBMITTING, next_attempt_at=later), None, "e"),
        Change(_record(done, State.SUBMITTING), None, "e"),
        Change(_record(failed, State.FAILED, error_code="X"), None, "e"),
    ])  # fmt: skip
    # A replay of an invoice first seen an hour ago: its age starts now, not at created_at.
    await _backdate(ledger, replayed, "history", 3600)
    await _backdate(ledger, replayed, "created_at", 3600)
    await ledger.apply([Change(_record(replayed, State.SUBMITTING), State.FAILED, "e", "REPLAY")])
    await ledger.apply([
        Change(_record(pending, State.PENDING, receipt_id="R"), State.SUBMITTING, "e"),
        Change(_record(done, State.CONFIRMED, platform_ref="P", accepted_at=later),
               State.SUBMITTING, "e"),
    ])  # fmt: skip
    # PENDING for 10 minutes; the receipt poller touching updated_at does not reset that.
    await _backdate(ledger, pending, "history", 600)
    await ledger.due_receipts(0, 100)
    # A red-letter invoice has waited two hours for its original: not an SLO breach.
    await _backdate(ledger, waiting, "history", 7200)

    summary = await ledger.state_summary(final=False)
    assert summary.unfinished == {"RECEIVED": 1, "SUBMITTING": 2, "PENDING": 1}
    assert summary.final is None
    assert summary.parked == 2  # the red-letter invoice and the one in backoff
    assert 600 <= summary.oldest_unfinished_seconds < 900
    assert summary.oldest_waiting_seconds >= 7200
    assert (await ledger.state_summary(final=True)).final == {"CONFIRMED": 1, "FAILED": 1}

    accepted = datetime.now(UTC)
    await ledger.apply([
        Change(_record(k, State.CONFIRMED, platform_ref="P", accepted_at=accepted), state, "e")
        for k, state in ((replayed, State.SUBMITTING), (pending, State.PENDING),
                         (backoff, State.SUBMITTING))
    ] + [Change(_record(waiting, State.FAILED, error_code="ORIGINAL_NOT_CONFIRMED"),
                State.RECEIVED, "e")])  # fmt: skip
    finished = await ledger.state_summary(final=True)
    assert finished.unfinished == {"RECEIVED": 0, "SUBMITTING": 0, "PENDING": 0}
    assert finished.final == {"CONFIRMED": 4, "FAILED": 2}
    assert (finished.parked, finished.oldest_unfinished_seconds) == (0, 0.0)
    assert finished.oldest_waiting_seconds == 0.0
