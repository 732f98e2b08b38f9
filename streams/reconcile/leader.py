"""Leader election for periodic work: a PostgreSQL advisory lock on a connection of its own.

A session-level advisory lock lives exactly as long as the session that took it, so the
lock is held on a dedicated connection (never a pooled one, which would hand the lock to
whoever borrows the connection next). A worker that dies or loses its database loses
the lock with its session, and another worker takes over at its next attempt.
"""

from __future__ import annotations

import logging

import asyncpg

from streams.errors import LedgerUnavailableError

log = logging.getLogger(__name__)

#: the sweeper's lock; distinct from the migrations' lock (streams.ledger.migrate)
SWEEP_LOCK_ID = 0x1A7015E6


_LOST = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class LeaderLock:
    def __init__(self, dsn: str, lock_id: int = SWEEP_LOCK_ID) -> None:
        self._dsn = dsn
        self._lock_id = lock_id
        self._conn: asyncpg.Connection | None = None

    async def held(self) -> bool:
        """True while this process holds the lock, taking it first when it is free."""
        try:
            return await self._hold()
        except _LOST as exc:
            await self.release()
            raise LedgerUnavailableError(f"leader lock unavailable: {exc}") from exc

    async def _hold(self) -> bool:
        if self._conn is not None and not self._conn.is_closed():
            # Held: the lock is only as good as its session, so check the session lives.
            await self._conn.fetchval("SELECT 1")
            return True
        await self.release()
        self._conn = await asyncpg.connect(self._dsn)
        if await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id):
            log.info("took the leader lock %#x", self._lock_id)
            return True
        # Not the leader: keep no idle connection open until the next try.
        await self.release()
        return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                # Ending the session releases its advisory locks.
                await conn.close(timeout=5)
            except _LOST:
                conn.terminate()
