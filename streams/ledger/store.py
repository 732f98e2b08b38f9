"""The ledger's PostgreSQL side, through one asyncpg pool.

Writes are batched: one transaction per wave of invoices (see
``streams.processor``), because a round trip costs ~0.3 ms here and a
transaction per invoice would cap a worker near a thousand invoices a second.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from streams.errors import LedgerUnavailableError
from streams.ledger.migrate import Migration, migrate
from streams.ledger.records import Change, HistoryEntry, InvoiceKey, InvoiceRecord
from streams.ledger.states import State, check_transition

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a vanished or restarting database looks like to asyncpg.
_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

_COLUMNS = (
    "seller_tax_id, invoice_number, state, content_hash, kind, issue_date, total_with_tax, "
    "source_event_id, source_partition, source_offset, attempts, platform_ref, accepted_at, "
    "receipt_id, error_code, error_message, error_field, issued_at, created_at, updated_at, "
    "confirmed_at, next_attempt_at, failures"
)

_UPSERT = """
INSERT INTO invoices (seller_tax_id, invoice_number, state, content_hash, kind, issue_date,
    total_with_tax, payload, source_event_id, source_partition, source_offset, attempts,
    platform_ref, accepted_at, receipt_id, error_code, error_message, error_field, issued_at,
    confirmed_at, next_attempt_at, failures)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[],
    $7::numeric[], $8::bytea[], $9::text[], $10::int[], $11::bigint[], $12::int[], $13::text[],
    $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::text[], $19::timestamptz[],
    $20::timestamptz[], $21::timestamptz[], $22::int[])
ON CONFLICT (seller_tax_id, invoice_number) DO UPDATE SET
    state = EXCLUDED.state,
    content_hash = EXCLUDED.content_hash,
    kind = EXCLUDED.kind,
    issue_date = EXCLUDED.issue_date,
    total_with_tax = EXCLUDED.total_with_tax,
    payload = COALESCE(EXCLUDED.payload, invoices.payload),
    source_event_id = EXCLUDED.source_event_id,
    source_partition = EXCLUDED.source_partition,
    source_offset = EXCLUDED.source_offset,
    attempts = EXCLUDED.attempts,
    platform_ref = EXCLUDED.platform_ref,
    accepted_at = EXCLUDED.accepted_at,
    receipt_id = EXCLUDED.receipt_id,
    error_code = EXCLUDED.error_code,
    error_message = EXCLUDED.error_message,
    error_field = EXCLUDED.error_field,
    issued_at = EXCLUDED.issued_at,
    confirmed_at = EXCLUDED.confirmed_at,
    next_attempt_at = EXCLUDED.next_attempt_at,
    failures = EXCLUDED.failures,
    updated_at = now()
"""

_HISTORY = """
INSERT INTO invoice_history (seller_tax_id, invoice_number, from_state, to_state, event_id,
    reason_code, detail, worker_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[])
"""


def _record(row: asyncpg.Record) -> InvoiceRecord:
    return InvoiceRecord(
        key=InvoiceKey(row["seller_tax_id"], row["invoice_number"]),
        state=State(row["state"]),
        content_hash=row["content_hash"],
        kind=row["kind"],
        issue_date=row["issue_date"],
        total_with_tax=row["total_with_tax"],
        source_event_id=row["source_event_id"],
        source_partition=row["source_partition"],
        source_offset=row["source_offset"],
        attempts=row["attempts"],
        platform_ref=row["platform_ref"],
        accepted_at=row["accepted_at"],
        receipt_id=row["receipt_id"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        error_field=row["error_field"],
        issued_at=row["issued_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        confirmed_at=row["confirmed_at"],
        next_attempt_at=row["next_attempt_at"],
        failures=row["failures"],
    )


class Ledger:
    """Invoice state and history. ``start``/``close`` are safe to call twice."""

    def __init__(self, dsn: str, *, worker_id: str, min_size: int = 1, max_size: int = 8) -> None:
        self._dsn = dsn
        self._worker_id = worker_id
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await self._guard(
                lambda: asyncpg.create_pool(
                    self._dsn, min_size=self._min_size, max_size=self._max_size
                )
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Ledger:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @staticmethod
    async def _guard(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except _UNAVAILABLE as exc:
            raise LedgerUnavailableError(f"ledger database unavailable: {exc}") from exc

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise RuntimeError("Ledger.start() was not called")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise LedgerUnavailableError(f"ledger database unavailable: {exc}") from exc

    async def migrate(self) -> list[Migration]:
        async with self._connection() as conn:
            return await migrate(conn)

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def load(self, keys: Sequence[InvoiceKey]) -> dict[InvoiceKey, InvoiceRecord]:
        """The current rows of ``keys`` (absent keys are simply missing)."""
        if not keys:
            return {}
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM invoices i JOIN unnest($1::text[], $2::text[]) "
                "AS k(s, n) ON i.seller_tax_id = k.s AND i.invoice_number = k.n",
                [k.seller_tax_id for k in keys],
                [k.invoice_number for k in keys],
            )
        return {record.key: record for record in map(_record, rows)}

    async def apply(self, changes: Sequence[Change]) -> None:
        """Write ``changes`` (rows and their history) in one transaction."""
        if not changes:
            return
        latest: dict[InvoiceKey, Change] = {}
        for change in changes:
            if not change.history_only:
                check_transition(
                    change.previous, change.record.state, invoice_key=str(change.record.key)
                )
                latest[change.record.key] = change
        rows = _columns_of(list(latest.values()))
        history = _history_columns(changes, self._worker_id)
        async with self._connection() as conn, conn.transaction():
            if latest:
                await conn.execute(_UPSERT, *rows)
            await conn.execute(_HISTORY, *history)

    async def get(self, key: InvoiceKey) -> InvoiceRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM invoices WHERE seller_tax_id = $1 AND invoice_number = $2",
                key.seller_tax_id,
                key.invoice_number,
            )
        return None if row is None else _record(row)

    async def find(
        self, invoice_number: str, seller_tax_id: str | None = None
    ) -> list[InvoiceRecord]:
        """Every invoice with this number (one per seller), or the seller's one."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM invoices WHERE invoice_number = $1 "
                "AND ($2::text IS NULL OR seller_tax_id = $2) ORDER BY seller_tax_id",
                invoice_number,
                seller_tax_id,
            )
        return [_record(row) for row in rows]

    async def payload(self, key: InvoiceKey) -> bytes | None:
        async with self._connection() as conn:
            payload: bytes | None = await conn.fetchval(
                "SELECT payload FROM invoices WHERE seller_tax_id = $1 AND invoice_number = $2",
                key.seller_tax_id,
                key.invoice_number,
            )
        return payload

    async def history(self, key: InvoiceKey) -> list[HistoryEntry]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT at, from_state, to_state, event_id, reason_code, detail, worker_id "
                "FROM invoice_history WHERE seller_tax_id = $1 AND invoice_number = $2 ORDER BY id",
                key.seller_tax_id,
                key.invoice_number,
            )
        return [
            HistoryEntry(
                at=row["at"],
                from_state=State(row["from_state"]) if row["from_state"] else None,
                to_state=State(row["to_state"]),
                event_id=row["event_id"],
                reason_code=row["reason_code"],
                detail=row["detail"],
                worker_id=row["worker_id"],
            )
            for row in rows
        ]

    async def due_receipts(self, older_than_seconds: float, limit: int) -> list[InvoiceRecord]:
        """PENDING invoices not looked at for a while, claimed so other workers skip them."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"""UPDATE invoices SET updated_at = now()
                    WHERE (seller_tax_id, invoice_number) IN (
                        SELECT seller_tax_id, invoice_number FROM invoices
                        WHERE state = 'PENDING'
                          AND updated_at < now() - make_interval(secs => $1)
                        ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING {_COLUMNS}""",
                older_than_seconds,
                limit,
            )
        return [_record(row) for row in rows]

    async def unfinished(
        self, *, parked_after: float, stale_after: float, limit: int
    ) -> list[tuple[InvoiceRecord, bytes]]:
        """Claim invoices to finish: parked red-letter ones (RECEIVED), ones parked in
        backoff whose next attempt is due, and attempts left mid-flight by a worker that
        died (SUBMITTING, untouched for ``stale_after`` seconds)."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"""UPDATE invoices SET updated_at = now(), next_attempt_at = NULL
                    WHERE (seller_tax_id, invoice_number) IN (
                        SELECT seller_tax_id, invoice_number FROM invoices
                        WHERE (state = 'RECEIVED'
                               AND updated_at < now() - make_interval(secs => $1))
                           OR (state = 'SUBMITTING' AND next_attempt_at <= now())
                           OR (state = 'SUBMITTING' AND next_attempt_at IS NULL
                               AND updated_at < now() - make_interval(secs => $2))
                        ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                    RETURNING {_COLUMNS}, payload""",
                parked_after,
                stale_after,
                limit,
            )
        return [(_record(row), row["payload"] or b"") for row in rows]

    async def counts_by_state(self) -> dict[State, int]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT state, count(*) AS n FROM invoices GROUP BY state")
        return {State(row["state"]): row["n"] for row in rows}

    async def failures_by_code(self) -> dict[str, int]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT error_code, count(*) AS n FROM invoices WHERE state = 'FAILED' "
                "GROUP BY error_code ORDER BY n DESC"
            )
        return {row["error_code"] or "UNKNOWN": row["n"] for row in rows}

    async def confirmation_latency(self) -> tuple[float, float] | None:
        """p50 and p99 seconds from issued (the event's ``occurred_at``) to confirmed."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99
                   FROM (SELECT extract(epoch FROM confirmed_at - issued_at)::float8 AS s
                         FROM invoices WHERE state = 'CONFIRMED' AND issued_at IS NOT NULL) t"""
            )
        if row is None or row["p50"] is None:
            return None
        return float(row["p50"]), float(row["p99"])


def _columns_of(changes: Sequence[Change]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(22)]
    for change in changes:
        r = change.record
        values: tuple[Any, ...] = (
            r.key.seller_tax_id,
            r.key.invoice_number,
            r.state.value,
            r.content_hash,
            r.kind,
            r.issue_date,
            r.total_with_tax,
            change.payload,
            r.source_event_id,
            r.source_partition,
            r.source_offset,
            r.attempts,
            r.platform_ref,
            r.accepted_at,
            r.receipt_id,
            r.error_code,
            r.error_message,
            r.error_field,
            r.issued_at,
            r.confirmed_at,
            r.next_attempt_at,
            r.failures,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _history_columns(changes: Sequence[Change], worker_id: str) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(8)]
    for change in changes:
        values = (
            change.record.key.seller_tax_id,
            change.record.key.invoice_number,
            None if change.previous is None else change.previous.value,
            change.record.state.value,
            change.event_id,
            change.reason_code,
            change.detail,
            worker_id,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
