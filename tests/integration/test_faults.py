"""Nothing lost, nothing twice: the pipeline under crashes, outages and bad credentials.

Every scenario runs real worker processes against the real broker and PostgreSQL and
judges from the sandbox's own record and the output topics (see ``chaos.py``).
``make chaos`` runs the same at a larger size (CHAOS_INVOICES) and prints the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from functools import partial

import aiohttp
import asyncpg
import pytest

from streams.demo.feed import FeedItem
from streams.local.postgres import EmbeddedPostgres
from streams.local.processes import free_port
from streams.local.worker import WorkerProcess
from streams.sandbox.faults import Faults

from .chaos import APP_ID, APP_SECRET, Report, Run, run_scenario
from .conftest import Services

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

COUNT = int(os.environ.get("CHAOS_INVOICES", "1500"))
REPORTS: list[Report] = []


async def _start_crashing(run: Run, point: str, after: int) -> None:
    worker = run.worker(INVOICE_SYNC_FAULT_CRASH_AT=point,
                        INVOICE_SYNC_FAULT_CRASH_AFTER=str(after))  # fmt: skip
    with contextlib.suppress(RuntimeError):  # crashed before it reported ready
        await worker.start()
    if worker.process is not None:
        await run.crashed(worker)
    await run.worker().start()


def _crash_at(point: str, after: int):  # type: ignore[no-untyped-def]
    async def action(run: Run, items: list[FeedItem]) -> None:
        await _start_crashing(run, point, after)

    return action


async def _just_run(run: Run, items: list[FeedItem]) -> None:
    await run.worker().start()


async def _outage(run: Run, items: list[FeedItem]) -> None:
    run.sandbox.faults.update(maintenance=True, maintenance_retry_after=1.0)
    await run.worker().start()
    await asyncio.sleep(6)  # an outage shorter than the retry budget
    run.sandbox.faults.update(maintenance=False)


async def _bad_credentials(run: Run, items: list[FeedItem]) -> None:
    run.sandbox.apps[APP_ID] = "not-the-secret"
    worker = run.worker()
    await worker.start(require_ready=False)
    assert await _ready(worker) == (503, False), "a 401 must show as unready"
    run.sandbox.apps[APP_ID] = APP_SECRET


async def _ready(worker: WorkerProcess) -> tuple[int, bool]:
    url = f"http://127.0.0.1:{worker.http_port}/readyz"
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(url) as resp:
                body = await resp.json()
                if not body["platform_credentials_ok"]:
                    return resp.status, False
            await asyncio.sleep(0.1)
    return 200, True


async def _rebalance(run: Run, items: list[FeedItem]) -> None:
    first, second = run.worker(), run.worker()
    await asyncio.gather(first.start(), second.start())
    await asyncio.sleep(1.0)
    first.kill()  # mid-stream: the other one takes its partitions over
    await run.worker().start()  # and a third joins


@pytest.fixture(scope="module")
async def own_postgres(services: Services) -> AsyncIterator[EmbeddedPostgres]:
    """A database of its own for the outage scenario, on a fixed port so it comes back
    where the worker expects it."""
    pg = EmbeddedPostgres(services.data_dir / "outage-pg", port=free_port())
    async with pg:
        yield pg


async def _database_outage(run: Run, items: list[FeedItem], pg: EmbeddedPostgres) -> None:
    worker = run.worker()
    await worker.start()
    await asyncio.sleep(0.5)
    await pg.stop()
    await asyncio.sleep(4)  # the worker holds intake; nothing is uploaded unrecorded
    await pg.start()


SCENARIOS = {
    "in-doubt+5xx": (_just_run, Faults(in_doubt_fraction=0.05, in_doubt_mode="drop",
                                       server_error_fraction=0.05, accept_async_fraction=0.05,
                                       receipt_processing_seconds=0.5), {}),
    "crash-before-post": (_crash_at("before_post", 300), None, {}),
    # SIGKILL with the body on the wire: the platform stores what the worker never hears of.
    "crash-during-post": (_crash_at("during_post", 300), None, {}),
    "crash-after-post": (_crash_at("after_post", 300), None, {}),
    "crash-after-ledger": (_crash_at("after_ledger", 3), None, {}),
    "crash-before-commit": (_crash_at("before_commit", 3), None, {}),
    "outage-503": (_outage, None, {}),
    "rate-limited": (_just_run, Faults(quota_per_second=300),
                     {"INVOICE_SYNC_PLATFORM_RATE_LIMIT": "250"}),
    "bad-credentials": (_bad_credentials, None, {"INVOICE_SYNC_PLATFORM_AUTH_RETRY_SECONDS": "1"}),
    "rebalance": (_rebalance, None, {}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_invoice_stored_once_or_failed_with_reason(
    name: str, services: Services
) -> None:
    action, faults, env = SCENARIOS[name]
    report = await run_scenario(
        name, bootstrap=services.bootstrap, database_url=services.database_url,
        data_dir=services.data_dir, count=COUNT, action=action, faults=faults, env=env,
    )  # fmt: skip
    _check(report)


async def test_database_outage_holds_intake_and_loses_nothing(
    services: Services, own_postgres: EmbeddedPostgres
) -> None:
    report = await run_scenario(
        "database-outage", bootstrap=services.bootstrap, database_url=own_postgres.url,
        data_dir=services.data_dir, count=COUNT,
        action=partial(_database_outage, pg=own_postgres),
    )  # fmt: skip
    _check(report)


async def _confirmed_by(run: Run, worker_id: str, timeout: float = 60.0) -> None:
    """Wait until ``worker_id`` has confirmed something: it holds partitions and works."""
    conn = await asyncpg.connect(run.database_url)
    try:
        async with asyncio.timeout(timeout):
            while not await conn.fetchval(  # noqa: ASYNC110 (a database, not an event)
                "SELECT EXISTS (SELECT 1 FROM invoice_history WHERE worker_id = $1 "
                "AND to_state = 'CONFIRMED')", worker_id,
            ):  # fmt: skip
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _scale_out(run: Run, items: list[FeedItem]) -> None:
    first, second = (run.worker(INVOICE_SYNC_WORKER_ID=f"scale-{n}") for n in (1, 2))
    await asyncio.gather(first.start(), second.start())
    await asyncio.gather(_confirmed_by(run, "scale-1"), _confirmed_by(run, "scale-2"))
    third = run.worker(INVOICE_SYNC_WORKER_ID="scale-3")
    await third.start()  # joins mid-stream (4 partitions: it may get none yet)
    await second.stop()  # leaves cleanly mid-stream: its partitions move on
    await _confirmed_by(run, "scale-3")


async def test_workers_share_the_load_as_they_come_and_go(services: Services) -> None:
    report = await run_scenario(
        "scale-out", bootstrap=services.bootstrap, database_url=services.database_url,
        data_dir=services.data_dir, count=COUNT, action=_scale_out,
        # Still feeding when the third takes over: two joins, a leave and their
        # rebalances took ~20 s, as long as a 20 s feed, and the third then got 3 of 1,697.
        feed_rate=max(COUNT / 40, 25),
    )  # fmt: skip
    _check(report)
    # Every worker that ran (two from the start, one joining, one leaving) did a share.
    shares = sorted(report.confirmed_by.values())
    assert len(shares) == report.workers_started == 3, f"idle workers: {report.confirmed_by}"
    assert shares[0] >= 0.01 * report.invoices, f"the work was not shared: {report.confirmed_by}"
    # Hand-overs re-read uncommitted records; the ledger answers those without a POST.
    assert report.posts_per_invoice <= 1.05, report


def _check(report: Report) -> None:
    REPORTS.append(report)
    assert report.lost == 0, report
    assert report.duplicated == 0, report
    assert report.wrong_reason == 0, report
    assert report.unfinished == 0, report
    assert report.stored_once > 0.9 * report.invoices
    # Only the invalid invoices end in the DLQ: no outage or crash dead-letters anything.
    assert report.dead_lettered == report.invoices - report.stored_once, report
