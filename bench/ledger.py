"""The ledger at size: millions of rows (COPY), then the lookups ops and finance make.

Runs in its own database (``bench_ledger``) with the ledger's own migrations, so the
indexes measured are the ones production gets. Rows carry no payload (a real one
holds ~1 KB of event bytes, kept out of line by TOAST): the lookups read indexes and
the heap tuple, which the payload does not change.
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import orjson

from bench.pipeline import percentile, say
from streams.ledger.migrate import migrate
from streams.ledger.records import InvoiceKey
from streams.ledger.store import Ledger

DATABASE = "bench_ledger"
SELLERS = 2000
DAYS = 730  # two years of issue dates
CHUNK = 100_000

#: the one-month history page of one seller, as ``streams.ledger.queries.invoice_page``
#: asks for it (used for EXPLAIN, and timed directly when that module is absent)
MONTH_PAGE = """
SELECT * FROM invoices
WHERE seller_tax_id = $1 AND issue_date BETWEEN $2 AND $3
ORDER BY issue_date, invoice_number
LIMIT 101"""
PageQuery = Callable[..., Awaitable[object]]


def _invoice_page() -> PageQuery | None:
    """The ledger's own page query when this checkout has it (``streams.ledger.queries``)."""
    try:
        module = importlib.import_module("streams.ledger.queries")
    except ImportError:
        return None
    found: PageQuery | None = getattr(module, "invoice_page", None)
    return found


_COLUMNS = ["seller_tax_id", "invoice_number", "state", "content_hash", "kind", "issue_date",
            "total_with_tax", "attempts", "platform_ref", "issued_at", "confirmed_at"]  # fmt: skip


@dataclass(frozen=True)
class Lookup:
    name: str
    calls: int
    p50_ms: float
    p99_ms: float
    plan: str  # the top plan nodes, to show they are index scans

    @property
    def index_bound(self) -> bool:
        return "Index" in self.plan and "Seq Scan" not in self.plan


@dataclass(frozen=True)
class LedgerResult:
    rows: int
    fill_seconds: float
    index_seconds: float
    lookups: list[Lookup]
    #: ``SELECT 1`` through the same pool, between the pages: no lookup can beat it, so it
    #: tells a slow stretch of the machine from a slow plan (not part of the target)
    round_trip: Lookup


def database_url(server_url: str, database: str) -> str:
    """The same server, another database (``postgresql://user@host:port/db``)."""
    base, _, rest = server_url.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def prepare(server_url: str) -> str:
    """A fresh ``bench_ledger`` database, migrated; returns its URL."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    url = database_url(server_url, DATABASE)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


def _seller(n: int) -> str:
    return f"91{n:015d}X"


def _number(i: int) -> str:
    return f"{i:020d}"


def _rows(first: int, count: int, start: date) -> Iterator[tuple[object, ...]]:
    now = datetime.now(UTC)
    for i in range(first, first + count):
        # Spread each seller's invoices over every day of the two years.
        day = start + timedelta(days=(i // SELLERS) % DAYS)
        stamp = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
        confirmed = i % 50 != 0
        yield (
            _seller(i % SELLERS), _number(i), "CONFIRMED" if confirmed else "FAILED",
            "0" * 64, "blue", day, Decimal(1000 + i % 9000), 1,
            f"P{i:018d}" if confirmed else None, stamp, stamp if confirmed else now,
        )  # fmt: skip


async def fill(url: str, rows: int) -> tuple[float, float]:
    """COPY ``rows`` rows with the secondary indexes dropped, then rebuild them.

    Returns (seconds copying, seconds building indexes)."""
    conn = await asyncpg.connect(url)
    try:
        secondary = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'invoices' "
            "AND indexname <> 'invoices_pkey'"
        )
        indexes = [row["indexdef"] for row in secondary]
        for row in secondary:
            await conn.execute(f"DROP INDEX {row['indexname']}")
        await conn.execute("ALTER TABLE invoices DROP CONSTRAINT invoices_pkey")
        start = date.today() - timedelta(days=DAYS)
        began = time.perf_counter()
        for first in range(0, rows, CHUNK):
            n = min(CHUNK, rows - first)
            await conn.copy_records_to_table(
                "invoices", records=_rows(first, n, start), columns=_COLUMNS
            )
            if (first // CHUNK) % 10 == 9:
                say(f"  ledger: {first + n:,}/{rows:,} rows copied")
        copied = time.perf_counter() - began
        began = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '256MB'")
        await conn.execute("ALTER TABLE invoices ADD PRIMARY KEY (seller_tax_id, invoice_number)")
        for definition in indexes:
            await conn.execute(definition)
        await conn.execute("VACUUM ANALYZE invoices")
        return copied, time.perf_counter() - began
    finally:
        await conn.close()


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan = orjson.loads(raw)[0]["Plan"]
    nodes: list[str] = []
    while True:
        nodes.append(f"{plan['Node Type']}" + (f" {plan['Index Name']}"
                                               if "Index Name" in plan else ""))  # fmt: skip
        children = plan.get("Plans") or []
        if not children:
            return " > ".join(nodes)
        plan = children[0]


async def lookups(url: str, rows: int, calls: int = 500) -> tuple[list[Lookup], Lookup]:
    """Each lookup ``calls`` times with random keys, timed from the client (round trip),
    and the round trip alone, timed between the pages."""
    rng = random.Random(11)
    start = date.today() - timedelta(days=DAYS)
    results: list[Lookup] = []
    async with Ledger(url, worker_id="bench", max_size=2) as ledger:
        # Warm up on other keys first: a serving ledger has its indexes' upper levels in
        # memory, while right after the COPY and index build the page cache may not.
        for i in (rng.randrange(rows) for _ in range(calls // 5)):
            await ledger.get(InvoiceKey(_seller(i % SELLERS), _number(i)))
            await ledger.find(_number(i))
        keys = [rng.randrange(rows) for _ in range(calls)]
        timings: list[float] = []
        for i in keys:
            began = time.perf_counter()
            record = await ledger.get(InvoiceKey(_seller(i % SELLERS), _number(i)))
            timings.append((time.perf_counter() - began) * 1000)
            assert record is not None
        timings_find: list[float] = []
        for i in keys:
            began = time.perf_counter()
            found = await ledger.find(_number(i))
            timings_find.append((time.perf_counter() - began) * 1000)
            assert found
        timings_page: list[float] = []
        timings_alone: list[float] = []
        pages = []
        for _ in range(calls):
            month = (start + timedelta(days=30 * rng.randrange(DAYS // 30 - 1))).replace(day=1)
            last = (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            pages.append((_seller(rng.randrange(SELLERS)), month, last))
        page_query = _invoice_page()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("SELECT 1")
            for seller, month, last in pages:
                began = time.perf_counter()
                if page_query is not None:
                    await page_query(ledger, seller, month, last, page_size=100)
                else:
                    await conn.fetch(MONTH_PAGE, seller, month, last)
                timings_page.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                async with ledger.connection() as pooled:
                    await pooled.fetchval("SELECT 1")
                timings_alone.append((time.perf_counter() - began) * 1000)
            i = keys[0]
            key_sql = ("SELECT * FROM invoices WHERE seller_tax_id = $1 "
                       "AND invoice_number = $2")  # fmt: skip
            num_sql = "SELECT * FROM invoices WHERE invoice_number = $1"
            plans = (
                await _plan(conn, key_sql, _seller(i % SELLERS), _number(i)),
                await _plan(conn, num_sql, _number(i)),
                await _plan(conn, MONTH_PAGE, *pages[0]),
            )
        finally:
            await conn.close()
    for name, timing, plan in zip(
        ("status by invoice (seller + number)", "status by number only",
         "one-month page of one seller" + (" (invoice_page)" if page_query else " (SQL)")),
        (timings, timings_find, timings_page), plans, strict=True,
    ):  # fmt: skip
        results.append(Lookup(name, len(timing), percentile(timing, 50),
                              percentile(timing, 99), plan))  # fmt: skip
    alone = Lookup("round trip alone (SELECT 1, between pages)", len(timings_alone),
                   percentile(timings_alone, 50), percentile(timings_alone, 99),
                   "Result")  # fmt: skip
    return results, alone
