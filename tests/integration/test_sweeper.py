"""The worker's own sweeper: leader-only, on a short interval, against a database of its
own (the session worker holds the sweep lock on the shared one)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import asyncpg
import pytest

from streams.demo.feed import make_invoice
from streams.kafka.topics import ensure_topics
from streams.ledger.states import State
from streams.ledger.store import Ledger
from streams.local.processes import free_port
from streams.local.worker import WorkerProcess
from streams.reconcile.leader import SWEEP_LOCK_ID, LeaderLock
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.security.audit import AuditEntry, AuditLog
from streams.validation.today import beijing_today

from .chaos import fresh_database
from .conftest import APP_ID, APP_SECRET, Services, fresh_invoice_key, insert_abandoned, worker_env

pytestmark = pytest.mark.integration
T = TypeVar("T")


@dataclass
class Sweeping:
    database_url: str
    sandbox: SandboxServer
    worker: WorkerProcess


@pytest.fixture(scope="module")
async def sweeping(services: Services) -> AsyncIterator[Sweeping]:
    database_url = await fresh_database(services.database_url, f"sweep_{uuid.uuid4().hex[:8]}")
    async with Ledger(database_url, worker_id="test") as ledger:
        await ledger.migrate()
    prefix = f"it-sweep-{uuid.uuid4().hex[:8]}."
    async with SandboxServer(apps={APP_ID: APP_SECRET}, faults=Faults()) as sandbox:
        env = {
            **worker_env(services, sandbox.url, prefix, partitions=1, database_url=database_url),
            "INVOICE_SYNC_WORKER_ID": "sweeper-1",
            "INVOICE_SYNC_SWEEP_INTERVAL_SECONDS": "0.5",
            "INVOICE_SYNC_SWEEP_STUCK_SECONDS": "100",
        }
        topics = [f"{prefix}invoices.{t}" for t in ("issued", "confirmed", "failed", "dlq")]
        await ensure_topics(services.bootstrap, topics, partitions=1, replication=1)
        worker = WorkerProcess(
            env, http_port=free_port(), log_path=services.data_dir / f"{prefix}worker.log"
        )
        async with worker:
            yield Sweeping(database_url, sandbox, worker)


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 60) -> T:
    """The first truthy answer of ``check``, polled until ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            answer = await check()
            if answer:
                return answer
            await asyncio.sleep(0.2)


def worker_sweeps(ledger: Ledger) -> Callable[[], Awaitable[list[AuditEntry]]]:
    return lambda: AuditLog(ledger).entries(action="sweep", actor="worker:sweeper-1")


async def test_the_leader_worker_re_drives_a_stuck_invoice(sweeping: Sweeping) -> None:
    key = fresh_invoice_key()
    body = make_invoice(random.Random(str(key)), seller_index=0, number=key.invoice_number,
                        issue_date=beijing_today())  # fmt: skip
    await insert_abandoned(sweeping.database_url, body)
    async with Ledger(sweeping.database_url, worker_id="test") as ledger:
        entries = await until(worker_sweeps(ledger))

        async def confirmed() -> bool:
            record = await ledger.get(key)
            return record is not None and record.state == State.CONFIRMED

        await until(confirmed)
    assert [(e.outcome, e.detail and e.detail["republished"]) for e in entries] == [
        ("ok", [str(key)])
    ]
    assert sweeping.sandbox.store.post_count((key.seller_tax_id, key.invoice_number)) == 1
    url = f"http://127.0.0.1:{sweeping.worker.http_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert "invoice_sync_swept_invoices_total 1.0" in await resp.text()


async def test_only_one_contender_holds_the_sweep_lock(sweeping: Sweeping) -> None:
    conn = await asyncpg.connect(sweeping.database_url)
    try:
        # The worker takes the lock at its first sweep, right after it is ready.
        await until(lambda: conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = $1 AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())",
            SWEEP_LOCK_ID,
        ))  # fmt: skip
    finally:
        await conn.close()
    contender = LeaderLock(sweeping.database_url)
    try:
        assert not await contender.held()
        await sweeping.worker.stop()
        # The worker's session ended with it, and its lock with the session.
        assert await contender.held()
        assert await contender.held()  # and stays held on the next round
        other = LeaderLock(sweeping.database_url)
        assert not await other.held()
        await other.release()
    finally:
        await contender.release()
