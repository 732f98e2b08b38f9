"""The ledger's PostgreSQL side, through one asyncpg pool.

Writes are batched: one statement per wave of invoices (see ``streams.processor``),
because a round trip costs ~0.3 ms here and a transaction per invoice would cap a
worker near a thousand invoices a second.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TypeVar

import asyncpg

from streams.errors import LedgerError, LedgerUnavailableError
from streams.ledger.migrate import Migration, migrate, pending
from streams.ledger.records import (
    Change,
    HistoryEntry,
    InvoiceKey,
    InvoiceRecord,
    StateSummary,
)
from streams.ledger.rows import history_rows, invoice_rows, record_from_row
from streams.ledger.sql import (
    APPLY,
    COLUMNS,
    CREDITED,
    FINAL_COUNTS,
    UNFINISHED_SUMMARY,
)
from streams.ledger.states import State, check_transition
from streams.security.crypto import PayloadCipher

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


class Ledger:
    """Invoice state and history. ``start``/``close`` are safe to call twice."""

    def __init__(
        self,
        dsn: str,
        *,
        worker_id: str,
        min_size: int = 1,
        max_size: int = 8,
        cipher: PayloadCipher | None = None,
    ) -> None:
        self._dsn = dsn
        self._cipher = cipher
        self._worker_id = worker_id
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await self._guard(
                lambda: asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    reset=_session_kept,
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
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a vanished database raises ``LedgerUnavailableError``."""
        if self._pool is None:
            raise RuntimeError("Ledger.start() was not called")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise LedgerUnavailableError(f"ledger database unavailable: {exc}") from exc

    async def migrate(self) -> list[Migration]:
        # A connection of its own, closed after: the migration's advisory lock ends
        # with its session, whatever happens, and never reaches a pooled connection
        # (the pool does not reset sessions, see _session_kept).
        conn = await self._guard(lambda: asyncpg.connect(self._dsn))
        try:
            return await self._guard(lambda: migrate(conn))
        finally:
            await conn.close()

    async def pending_migrations(self) -> list[Migration]:
        async with self.connection() as conn:
            return await pending(conn)

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.fetchval("SELECT 1")

    async def load(self, keys: Sequence[InvoiceKey]) -> dict[InvoiceKey, InvoiceRecord]:
        """The current rows of ``keys`` (absent keys are simply missing)."""
        if not keys:
            return {}
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM invoices i JOIN unnest($1::text[], $2::text[]) "
                "AS k(s, n) ON i.seller_tax_id = k.s AND i.invoice_number = k.n",
                [k.seller_tax_id for k in keys],
                [k.invoice_number for k in keys],
            )
        return {record.key: record for record in map(record_from_row, rows)}

    async def apply(self, changes: Sequence[Change]) -> set[InvoiceKey]:
        """Write ``changes`` (rows and their history) in one statement.

        A row changes only if it is still in the state its change expected, and never
        once CONFIRMED: two writers racing on one invoice cannot undo each other. A
        change that lost such a race is skipped (with its history) and logged; the keys
        skipped are returned, so the caller can drop what it meant to announce.
        """
        if not changes:
            return set()
        latest: dict[InvoiceKey, Change] = {}
        expected: dict[InvoiceKey, State | None] = {}
        for change in changes:
            if not change.history_only:
                key = change.record.key
                check_transition(change.previous, change.record.state, invoice_key=str(key))
                latest[key] = change
                # Several changes of one key in a batch: the row is in the first one's state.
                expected.setdefault(key, change.previous)
        rows, payloads = invoice_rows([(c, expected[k]) for k, c in latest.items()], self._seal)
        history = history_rows(changes, self._worker_id, latest)
        async with self.connection() as conn:
            skipped = await conn.fetch(APPLY, rows, payloads, history)
        lost = {InvoiceKey(r["seller_tax_id"], r["invoice_number"]) for r in skipped}
        for key in sorted(lost):
            log.warning(
                "ledger: %s is no longer %s (another worker changed it first); not writing %s",
                key, expected[key] or "new", latest[key].record.state,
            )  # fmt: skip
        return lost

    async def get(self, key: InvoiceKey) -> InvoiceRecord | None:
        async with self.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM invoices WHERE seller_tax_id = $1 AND invoice_number = $2",
                key.seller_tax_id,
                key.invoice_number,
            )
        return None if row is None else record_from_row(row)

    async def credited(self, originals: Sequence[InvoiceKey]) -> dict[InvoiceKey, Decimal]:
        """For each original, the absolute total of the CONFIRMED red-letter invoices
        against it (0 when none), in one round trip."""
        unique = list(dict.fromkeys(originals))  # a repeated key would be summed twice
        if not unique:
            return {}
        async with self.connection() as conn:
            rows = await conn.fetch(
                CREDITED,
                [k.seller_tax_id for k in unique],
                [k.invoice_number for k in unique],
            )
        return {InvoiceKey(r["seller_tax_id"], r["invoice_number"]): r["credited"] for r in rows}

    async def find(
        self, invoice_number: str, seller_tax_id: str | None = None
    ) -> list[InvoiceRecord]:
        """Every invoice with this number (one per seller), or the seller's one."""
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM invoices WHERE invoice_number = $1 "
                "AND ($2::text IS NULL OR seller_tax_id = $2) ORDER BY seller_tax_id",
                invoice_number,
                seller_tax_id,
            )
        return [record_from_row(row) for row in rows]

    async def payload(self, key: InvoiceKey) -> bytes | None:
        async with self.connection() as conn:
            row = await conn.fetchrow(
                "SELECT payload, payload_key_id FROM invoices "
                "WHERE seller_tax_id = $1 AND invoice_number = $2",
                key.seller_tax_id,
                key.invoice_number,
            )
        return None if row is None else self._open(key, row["payload"], row["payload_key_id"])

    async def history(self, key: InvoiceKey) -> list[HistoryEntry]:
        async with self.connection() as conn:
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
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"""UPDATE invoices SET updated_at = now()
                    WHERE (seller_tax_id, invoice_number) IN (
                        SELECT seller_tax_id, invoice_number FROM invoices
                        WHERE state = 'PENDING'
                          AND updated_at < now() - make_interval(secs => $1)
                        ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING {COLUMNS}""",
                older_than_seconds,
                limit,
            )
        return [record_from_row(row) for row in rows]

    async def unfinished(
        self, *, parked_after: float, stale_after: float, limit: int
    ) -> list[tuple[InvoiceRecord, bytes]]:
        """Claim invoices to finish: parked red-letter ones (RECEIVED), ones parked in
        backoff whose next attempt is due, and attempts left mid-flight by a worker that
        died (SUBMITTING, untouched for ``stale_after`` seconds)."""
        async with self.connection() as conn:
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
                    RETURNING {COLUMNS}, payload, payload_key_id""",
                parked_after,
                stale_after,
                limit,
            )
        records = [record_from_row(row) for row in rows]
        return [
            (r, self._open(r.key, row["payload"], row["payload_key_id"]) or b"")
            for r, row in zip(records, rows, strict=True)
        ]

    async def state_summary(self, *, final: bool) -> StateSummary:
        """Invoices by state, parked ones, and how long the oldest have been waiting.

        Unfinished states are counted exactly off their partial index, cheap at any
        ledger size. CONFIRMED and FAILED take a full scan (seconds at 5M rows), so
        only when ``final`` is asked for. Ages run from the history entry that moved
        the invoice into its current state: ``updated_at`` is touched by every poll and
        claim, and ``created_at`` predates a replay.
        """
        async with self.connection() as conn:
            rows = await conn.fetch(UNFINISHED_SUMMARY)
            finals = None
            if final:
                finals = await conn.fetch(FINAL_COUNTS)
        count = {row["state"]: int(row["n"]) for row in rows}
        age = {row["state"]: float(row["oldest"]) for row in rows}
        done = {row["state"]: int(row["n"]) for row in finals or ()}
        return StateSummary(
            # Every state, 0 when empty: a gauge left at its last count would lie.
            unfinished={s: count.get(s, 0) for s in State if not s.is_final},
            final={s: done.get(s, 0) for s in State if s.is_final} if final else None,
            parked=sum(int(row["parked"]) for row in rows),
            oldest_unfinished_seconds=max(
                age.get(State.SUBMITTING, 0.0), age.get(State.PENDING, 0.0)
            ),
            oldest_waiting_seconds=age.get(State.RECEIVED, 0.0),
        )

    def _seal(self, key: InvoiceKey, payload: bytes | None) -> tuple[bytes | None, str | None]:
        if payload is None or self._cipher is None:
            return payload, None
        return self._cipher.seal(payload, context=str(key).encode())

    def _open(self, key: InvoiceKey, payload: bytes | None, key_id: str | None) -> bytes | None:
        if payload is None or key_id is None:
            return payload
        if self._cipher is None:
            raise LedgerError(
                f"payload of {key} is encrypted (key {key_id!r}); set INVOICE_SYNC_PAYLOAD_KEY"
            )
        return self._cipher.open(payload, key_id, context=str(key).encode())

    async def rekey(self, batch: int = 500) -> int:
        """Seal one batch of payloads not under the current key (or not sealed at all)
        with the current key; returns how many. Run until it returns 0."""
        if self._cipher is None:
            raise LedgerError("rekey needs INVOICE_SYNC_PAYLOAD_KEY")
        async with self.connection() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seller_tax_id, invoice_number, payload, payload_key_id FROM invoices "
                "WHERE payload IS NOT NULL AND payload_key_id IS DISTINCT FROM $1 "
                "LIMIT $2 FOR UPDATE SKIP LOCKED",
                self._cipher.current,
                batch,
            )
            for row in rows:
                key = InvoiceKey(row["seller_tax_id"], row["invoice_number"])
                plain = self._open(key, row["payload"], row["payload_key_id"])
                sealed, key_id = self._seal(key, plain)
                await conn.execute(
                    "UPDATE invoices SET payload = $3, payload_key_id = $4 "
                    "WHERE seller_tax_id = $1 AND invoice_number = $2",
                    key.seller_tax_id, key.invoice_number, sealed, key_id,
                )  # fmt: skip
        return len(rows)

    async def drop_old_payloads(self, older_than_days: int) -> int:
        """Retention: forget the payloads (never the rows) of invoices confirmed more than
        ``older_than_days`` ago; returns how many."""
        async with self.connection() as conn:
            done = await conn.execute(
                "UPDATE invoices SET payload = NULL, payload_key_id = NULL "
                "WHERE state = 'CONFIRMED' AND payload IS NOT NULL "
                "AND confirmed_at < now() - make_interval(days => $1)",
                older_than_days,
            )
        return int(str(done).rsplit(" ", 1)[-1])


async def _session_kept(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond what asyncpg always does (roll back an open
    transaction, drop listeners).

    Its default also sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: a round trip for each ledger call, three a wave.
    Pooled connections never take advisory locks (the migration has its own
    connection), LISTEN, SET, or hold cursors outside a transaction.
    """
