"""The ledger against real PostgreSQL: migrations, batched writes, history, lookups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest

from streams.errors import InvalidTransitionError, LedgerUnavailableError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.sql import CREDITED
from streams.ledger.states import State
from streams.ledger.store import Ledger

from .conftest import Services
from .conftest import fresh_invoice_key as _key

pytestmark = pytest.mark.integration


def _record(key: InvoiceKey, state: State, **kw: object) -> InvoiceRecord:
    return InvoiceRecord(key=key, state=state, content_hash="h", kind="blue",
                         issue_date=date(2026, 11, 20), total_with_tax=Decimal("1060.00"),
                         issued_at=datetime.now(UTC), **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_migrations_apply_once(ledger: Ledger) -> None:
    assert await ledger.migrate() == []


async def test_batched_changes_write_rows_and_history(ledger: Ledger) -> None:
    keys = [_key() for _ in range(50)]
    await ledger.apply([Change(_record(k, State.SUBMITTING), None, "e1", payload=b'{"x":1}')
                        for k in keys])  # fmt: skip
    now = datetime.now(UTC)
    await ledger.apply([
        Change(_record(k, State.CONFIRMED, platform_ref=f"R{i}", accepted_at=now,
                       confirmed_at=now, attempts=1), State.SUBMITTING, "e1")
        for i, k in enumerate(keys)
    ])  # fmt: skip
    loaded = await ledger.load(keys)
    assert {r.state for r in loaded.values()} == {State.CONFIRMED}
    assert loaded[keys[3]].platform_ref == "R3"
    assert loaded[keys[3]].total_with_tax == Decimal("1060.00")
    assert await ledger.payload(keys[0]) == b'{"x":1}'  # kept from the first write
    history = await ledger.history(keys[0])
    assert [(h.from_state, h.to_state) for h in history] == [
        (None, State.SUBMITTING), (State.SUBMITTING, State.CONFIRMED)]  # fmt: skip
    assert (await ledger.find(keys[0].invoice_number))[0].key == keys[0]


async def test_every_field_comes_back_exactly_as_written(ledger: Ledger) -> None:
    key = _key()
    shanghai = timezone(timedelta(hours=8))
    written = InvoiceRecord(
        key=key, state=State.SUBMITTING, content_hash="c" * 64, kind="red",
        issue_date=date(2026, 2, 28), total_with_tax=Decimal("-123456789012.34"),
        source_event_id="ev-1", source_partition=3, source_offset=2**40 + 7, attempts=2,
        platform_ref="P-1", accepted_at=datetime(2026, 3, 1, 8, 0, 0, 123456, shanghai),
        receipt_id="r-1", error_code="PLATFORM_5XX",
        error_message='购买方名称 "A\\B" 不符\n第二行', error_field="buyer.name",
        issued_at=datetime(2026, 2, 28, 23, 59, 59, 999999, UTC),
        next_attempt_at=datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC), failures=4,
        original_invoice_number="00000001",
    )  # fmt: skip
    await ledger.apply([Change(written, None, "ev-1", "WHY", "细节 \t", payload=b"\x00\xff")])
    read = await ledger.get(key)
    assert read is not None
    assert read._replace(created_at=None, updated_at=None) == written
    assert read.accepted_at is not None and read.accepted_at.utcoffset() is not None
    assert await ledger.payload(key) == b"\x00\xff"
    [entry] = await ledger.history(key)
    assert (entry.from_state, entry.to_state, entry.reason_code, entry.detail) == (
        None, State.SUBMITTING, "WHY", "细节 \t")  # fmt: skip


async def test_a_naive_time_is_written_as_utc_whatever_the_sessions_zone(
    services: Services,
) -> None:
    key = _key()
    sep = "&" if "?" in services.database_url else "?"
    async with Ledger(f"{services.database_url}{sep}TimeZone=Asia/Shanghai", worker_id="t") as led:
        naive = _record(key, State.SUBMITTING)._replace(issued_at=datetime(2026, 3, 1, 8, 0))
        await led.apply([Change(naive, None, "e")])
        read = await led.get(key)
    assert read is not None and read.issued_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


async def test_forbidden_transition_writes_nothing(ledger: Ledger) -> None:
    key = _key()
    with pytest.raises(InvalidTransitionError):
        await ledger.apply([Change(_record(key, State.CONFIRMED), None, "e")])
    assert await ledger.get(key) is None


async def test_history_is_append_only(ledger: Ledger, services: Services) -> None:
    key = _key()
    await ledger.apply([Change(_record(key, State.SUBMITTING), None, "e")])
    conn = await asyncpg.connect(services.database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM invoice_history WHERE invoice_number = $1",
                               key.invoice_number)  # fmt: skip
    finally:
        await conn.close()


async def test_due_receipts_are_claimed_once(ledger: Ledger) -> None:
    key = _key()
    await ledger.apply([Change(_record(key, State.SUBMITTING), None, "e")])
    await ledger.apply([Change(_record(key, State.PENDING, receipt_id="R"), State.SUBMITTING, "e")])
    first = await ledger.due_receipts(0, 1000)
    assert key in {r.key for r in first}
    again = await ledger.due_receipts(60, 1000)
    assert key not in {r.key for r in again}


async def test_unreachable_database_is_a_retryable_error() -> None:
    ledger = Ledger("postgresql://nobody@127.0.0.1:1/none", worker_id="t")
    with pytest.raises(LedgerUnavailableError) as info:
        await ledger.start()
    assert info.value.retryable


async def test_racing_writers_never_overwrite_confirmed_nor_a_moved_row(ledger: Ledger) -> None:
    confirmed, moved, fresh, taken, noted = _key(), _key(), _key(), _key(), _key()
    now = datetime.now(UTC)
    await ledger.apply([Change(_record(k, State.SUBMITTING), None, "e")
                        for k in (confirmed, moved, taken, noted)])  # fmt: skip
    await ledger.apply([
        Change(_record(confirmed, State.CONFIRMED, platform_ref="R1", accepted_at=now,
                       confirmed_at=now), State.SUBMITTING, "e"),
        Change(_record(moved, State.PENDING, receipt_id="RC"), State.SUBMITTING, "e"),
    ])  # fmt: skip
    # A slower writer still believes all of them SUBMITTING (or new), in one batch.
    lost = await ledger.apply([
        Change(_record(confirmed, State.FAILED, error_code="RETRIES_EXHAUSTED"),
               State.SUBMITTING, "late"),
        Change(_record(moved, State.FAILED, error_code="RETRIES_EXHAUSTED"),
               State.SUBMITTING, "late"),
        Change(_record(taken, State.RECEIVED), None, "late"),
        Change(_record(fresh, State.SUBMITTING), None, "late"),
        # Notes: on a key whose change lost (dropped with it), on one that changed
        # (after its change, in order), on one nothing in the batch changes (kept).
        *(Change(_record(k, State.SUBMITTING), State.SUBMITTING, "late-note",
                 "DUPLICATE_RESEND", history_only=True) for k in (confirmed, fresh, noted)),
    ])  # fmt: skip
    assert lost == {confirmed, moved, taken}
    rows = await ledger.load([confirmed, moved, fresh, taken])
    assert (rows[confirmed].state, rows[confirmed].platform_ref) == (State.CONFIRMED, "R1")
    assert (rows[moved].state, rows[moved].receipt_id) == (State.PENDING, "RC")
    assert rows[taken].state == State.SUBMITTING and rows[fresh].state == State.SUBMITTING
    # History is only written for what was applied.
    assert [h.event_id for h in await ledger.history(confirmed)] == ["e", "e"]
    assert [h.event_id for h in await ledger.history(fresh)] == ["late", "late-note"]
    assert [h.event_id for h in await ledger.history(noted)] == ["e", "late-note"]


async def test_credited_sums_confirmed_reds_per_original_in_one_query(
    ledger: Ledger, services: Services
) -> None:
    blue, other, untouched = _key(), _key(), _key()
    reds = {
        _key(): (State.CONFIRMED, "-300.00", blue),
        _key(): (State.CONFIRMED, "-200.50", blue),
        _key(): (State.FAILED, "-500.00", blue),  # never stored: nothing reversed
        _key(): (State.SUBMITTING, "-100.00", blue),  # not confirmed yet
        _key(): (State.CONFIRMED, "-50.00", other),
    }

    def red(key: InvoiceKey, state: State) -> InvoiceRecord:
        _, total, original = reds[key]
        return _record(key, state)._replace(kind="red", total_with_tax=Decimal(total),
                       original_invoice_number=original.invoice_number)  # fmt: skip

    await ledger.apply([Change(_record(k, State.SUBMITTING), None, "e") for k in (blue, other)])
    await ledger.apply([Change(red(k, State.SUBMITTING), None, "e") for k in reds])
    settled = [(k, state) for k, (state, _, _) in reds.items() if state != State.SUBMITTING]
    await ledger.apply([Change(red(k, state), State.SUBMITTING, "e") for k, state in settled])
    first = next(iter(reds))
    assert (await ledger.load([first]))[first].original_invoice_number == blue.invoice_number
    # A key asked twice is still summed once; one with no reds is 0.
    assert await ledger.credited([blue, other, untouched, blue]) == {
        blue: Decimal("500.50"), other: Decimal("50.00"), untouched: Decimal(0)}  # fmt: skip

    # Index-bound at any ledger size: the partial index serves the per-original probe.
    conn = await asyncpg.connect(services.database_url)
    try:
        await conn.execute("SET enable_seqscan = off")
        plan = await conn.fetch("EXPLAIN " + CREDITED, [blue.seller_tax_id],
                                [blue.invoice_number])  # fmt: skip
    finally:
        await conn.close()
    assert "invoices_original" in "\n".join(row[0] for row in plan)
