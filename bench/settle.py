"""The bench's PostgreSQL kept in the state of one that has been running a while, so
that no scenario pays for what the run before it left behind.

- **WAL segments.** A new server creates each 16 MB WAL segment the first time it
  writes into it, and the commit that crosses into a new one zero-fills it while every
  other commit waits. On this machine's disk, in a fresh server, the ledger's writes
  stalled 50-110 ms about every 1.8 s at 2,000 invoices/s (docs/performance.md, item
  39). A server that has been running recycles the segments each checkpoint frees
  (``wal_recycle``), so it has them ready; ``warm_wal`` gives the bench's server the
  same, once, before the first scenario.
- **Vacuum and checkpoint debt.** ``settle`` pays the last scenario's before the next
  one starts, not in the middle of it.
"""

from __future__ import annotations

import asyncpg

#: WAL segments readied before the first scenario, more than any scenario writes: the
#: 100k backlog writes ~30 (~5 KB of WAL per invoice). Below ``max_wal_size`` (1 GB),
#: so the warm-up itself sets off no checkpoint.
WARM_SEGMENTS = 48


async def warm_wal(database_url: str, segments: int = WARM_SEGMENTS) -> None:
    """Switch through ``segments`` new WAL segments, then checkpoint, which recycles
    them as the segments to come. ~3 s here."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(segments):
            # A switch with nothing written since the last one is a no-op.
            await conn.execute("SELECT pg_logical_emit_message(false, 'bench', 'warm-up')")
            await conn.execute("SELECT pg_switch_wal()")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def settle(database_url: str) -> None:
    """Pay the last scenario's vacuum and checkpoint debt before this one starts.

    A 100k backlog leaves 100k dead ledger rows (each invoice's claim, superseded by its
    outcome). PostgreSQL's autovacuum then picks the tables up within its one-minute
    nap, throttled over ~15 s, and when that fell in the steady phase its p99 doubled
    (docs/performance.md, item 31). Unthrottled here it takes 1-2 s. The checkpoint
    writes what the last scenario dirtied, which a checkpoint on WAL volume would
    otherwise write during this one, and recycles the segments it used. What a
    scenario's own writes make due still runs inside it, as in production."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
