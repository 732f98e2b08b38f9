"""Fault-injection scenarios: publish a feed, break something on purpose, and check from
the sandbox's own record and the output topics that nothing was lost or done twice."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from streams.demo.feed import EXPECTED_CODES, FeedItem, generate
from streams.demo.tracker import OutcomeTracker
from streams.kafka.topics import ensure_topics
from streams.local.processes import free_port
from streams.local.worker import WorkerProcess
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.sandbox.store import AlreadyExists, SandboxStore
from streams.settings import Settings
from streams.validation.today import beijing_today

APP_ID, APP_SECRET = "chaos-app", "chaos-secret"
PARTITIONS = 4


@dataclass
class Report:
    scenario: str
    invoices: int = 0
    stored_once: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_lettered: int = 0
    wrong_reason: int = 0
    unfinished: int = 0
    posts_per_invoice: float = 0.0
    #: POSTs of an invoice already stored (answered 409): what a lost answer or a crash
    #: cost in uploads attempted twice; the 409 kept each from being stored twice
    reposted: int = 0
    workers_started: int = 0
    repeated_confirmations: int = 0
    repeated_dead_letters: int = 0
    confirmed_by: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong_reason or self.unfinished)


@dataclass
class Run:
    """One scenario's world: its own topics, group, sandbox and worker processes."""

    bootstrap: str
    database_url: str
    data_dir: Path
    sandbox: SandboxServer
    settings: Settings
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**self.env, **extra_env}, http_port=free_port(),
                               log_path=self.data_dir / f"{self.settings.topic_prefix}"
                               f"worker-{len(self.workers)}.log")  # fmt: skip
        self.workers.append(worker)
        return worker

    async def crashed(self, worker: WorkerProcess, timeout: float = 120.0) -> None:
        """Wait for an armed worker to kill itself at its crash point."""
        assert worker.process is not None
        code = await asyncio.wait_for(worker.process.wait(), timeout)
        assert code == -9, f"worker should have been SIGKILLed, exited {code}"
        worker.process = None


Action = Callable[[Run, list[FeedItem]], Awaitable[None]]


async def run_scenario(
    name: str,
    *,
    bootstrap: str,
    database_url: str,
    data_dir: Path,
    count: int,
    action: Action,
    faults: Faults | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240.0,
    feed_rate: float | None = None,
) -> Report:
    prefix = f"chaos-{name}-{uuid.uuid4().hex[:6]}."
    report = Report(name)
    # A ledger of its own: workers of other tests, talking to another sandbox, would
    # otherwise claim this scenario's pending receipts from the shared database.
    database_url = await fresh_database(database_url, prefix.replace("-", "_").rstrip("."))
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            SandboxServer(apps={APP_ID: APP_SECRET}, faults=faults or Faults())
        )
        reposts = _count_reposts(sandbox.store)
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
        await ensure_topics(bootstrap, settings.all_topics, partitions=PARTITIONS, replication=1)
        run = Run(bootstrap, database_url, data_dir, sandbox, settings, {
            "INVOICE_SYNC_KAFKA_BOOTSTRAP": bootstrap,
            "INVOICE_SYNC_DATABASE_URL": database_url,
            "INVOICE_SYNC_PLATFORM_URL": sandbox.url,
            "INVOICE_SYNC_PLATFORM_APP_ID": APP_ID,
            "INVOICE_SYNC_PLATFORM_APP_SECRET": APP_SECRET,
            "INVOICE_SYNC_TOPIC_PREFIX": prefix,
            "INVOICE_SYNC_CONSUMER_GROUP": f"{prefix}group",
            "INVOICE_SYNC_KAFKA_SESSION_TIMEOUT": "6",
            "INVOICE_SYNC_DATA_DIR": str(data_dir / "worker"),
            "INVOICE_SYNC_RETRY_BASE_DELAY": "0.05",
            "INVOICE_SYNC_RETRY_MAX_DELAY": "1",
            "INVOICE_SYNC_RECEIPT_POLL_INTERVAL": "0.2",
            # Longer than any outage below: an attempt waiting on the breaker is not stale.
            "INVOICE_SYNC_RESUME_STALE_SECONDS": "60",
            "INVOICE_SYNC_BREAKER_PROBE_INTERVAL": "0.5",
            "INVOICE_SYNC_PLATFORM_TIMEOUT": "2",
            **(env or {}),
        })  # fmt: skip
        tracker = OutcomeTracker(bootstrap, settings.confirmed_topic, settings.failed_topic,
                                 settings.dlq_topic)  # fmt: skip
        await tracker.start()
        stack.push_async_callback(tracker.stop)
        stack.push_async_callback(_stop_workers, run)
        items = list(generate(count, today=beijing_today(), run_id=random.randrange(10**9),
                              invalid_fraction=0.02, red_fraction=0.02,
                              resend_fraction=0.02))  # fmt: skip
        started = time.monotonic()
        if feed_rate is None:
            await _publish(bootstrap, settings.issued_topic, items)
            await action(run, items)
        else:
            # A steady feed flowing while the action (workers coming and going) happens.
            feeding = asyncio.create_task(
                _publish(bootstrap, settings.issued_topic, items, rate=feed_rate)
            )
            await action(run, items)
            await feeding
        keys = {item.key for item in items}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not all(tracker.outcomes.settled(k) for k in keys):
            tracker.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.changed.wait(), 1.0)
        report.seconds = time.monotonic() - started
        report.workers_started = len(run.workers)
        await _judge(report, items, tracker, sandbox, database_url)
        report.reposted = sum(reposts.values())
    return report


def _count_reposts(store: SandboxStore) -> Counter[tuple[str, str]]:
    """Count, per invoice, the POSTs the sandbox answered ALREADY_EXISTS: every upload
    after the first success. The sandbox stores a key once, so "duplicated" alone could
    never show a second upload attempt; this does."""
    counts: Counter[tuple[str, str]] = Counter()
    submit = store.submit

    def counting(invoice: object, **kwargs: Any) -> Any:
        outcome = submit(invoice, **kwargs)
        if isinstance(outcome, AlreadyExists):
            counts[outcome.stored.key] += 1
        return outcome

    store.submit = counting  # type: ignore[method-assign]
    return counts


async def _publish(
    bootstrap: str, topic: str, items: list[FeedItem], rate: float | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = []
        for n, item in enumerate(items):
            sent.append(await producer.send(topic, item.value, key=item.key))
            if rate is not None and n % 50 == 49:
                await asyncio.sleep(50 / rate)
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _stop_workers(run: Run) -> None:
    for worker in run.workers:
        await worker.stop()


async def _judge(
    report: Report, items: list[FeedItem], tracker: OutcomeTracker, sandbox: SandboxServer,
    database_url: str,
) -> None:  # fmt: skip
    outcomes = tracker.outcomes
    valid = {item.key for item in items if item.defect is None}
    report.invoices = len({item.key for item in items})
    store = sandbox.store
    stored = {key for key in valid if store.stored(_identity(key)) is not None}
    confirmed = {key for key in valid if key in outcomes.confirmed}
    report.stored_once = len(stored & confirmed)
    lost = sorted(valid - (stored & confirmed))
    report.lost = len(lost)
    # A second upload would have been given a second platform reference.
    report.duplicated = sum(
        1 for key in confirmed if len({e["platform_ref"] for e in outcomes.confirmed[key]}) > 1
    )
    sent = {item.key: 0 for item in items}
    for item in items:
        sent[item.key] += 1
    report.repeated_confirmations = sum(
        max(0, len(outcomes.confirmed[k]) - sent[k]) for k in confirmed
    )
    report.dead_lettered = outcomes.dead_lettered()
    report.repeated_dead_letters = outcomes.dead_letter_records() - report.dead_lettered
    report.wrong_reason = sum(
        1 for item in items if item.defect is not None
        and (outcomes.failed.get(item.key) or [{}])[-1].get("reason_code")
        != EXPECTED_CODES[item.defect]
    )  # fmt: skip
    posts = sum(store.post_count(_identity(key)) for key in stored)
    report.posts_per_invoice = posts / max(len(stored), 1)
    conn = await asyncpg.connect(database_url)
    try:
        report.unfinished = await conn.fetchval(
            "SELECT count(*) FROM invoices WHERE state NOT IN ('CONFIRMED', 'FAILED') "
            "AND seller_tax_id || ':' || invoice_number = ANY($1::text[])",
            [key.decode() for key in valid],
        )
        # Which worker confirmed what: the history records the worker of every change.
        rows = await conn.fetch(
            "SELECT worker_id, count(*) AS n FROM invoice_history WHERE to_state = 'CONFIRMED' "
            "AND seller_tax_id || ':' || invoice_number = ANY($1::text[]) GROUP BY worker_id",
            [key.decode() for key in valid],
        )
        report.confirmed_by = {row["worker_id"]: row["n"] for row in rows}
        # A lost invoice says where it stopped: stored or not, announced or not, and
        # what the ledger holds for it.
        for key in lost[:5]:
            seller, number = key.decode().split(":", 1)
            state = await conn.fetchval(
                "SELECT state FROM invoices WHERE seller_tax_id = $1 AND invoice_number = $2",
                seller, number,
            )  # fmt: skip
            report.notes.append(
                f"lost {key.decode()}: stored={key in stored} confirmed event={key in confirmed} "
                f"ledger={state}"
            )
    finally:
        await conn.close()


async def fresh_database(server_url: str, name: str) -> str:
    """A new, empty database on the same server; returns its URL."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


def _identity(key: bytes) -> tuple[str, str]:
    seller, number = key.decode().split(":", 1)
    return seller, number


def table(reports: list[Report]) -> str:
    head = ("scenario", "invoices", "stored once", "lost", "duplicated", "409 re-POSTs",
            "dead-lettered", "POSTs/invoice", "repeat conf.", "workers", "time s")  # fmt: skip
    rows = [head] + [
        (r.scenario, str(r.invoices), str(r.stored_once), str(r.lost), str(r.duplicated),
         str(r.reposted), str(r.dead_lettered), f"{r.posts_per_invoice:.3f}",
         str(r.repeated_confirmations), str(len(r.confirmed_by)), f"{r.seconds:.1f}")
        for r in reports
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
