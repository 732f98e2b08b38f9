"""Real services, started once per session: Kafka (Apache Kafka in a container when a
Docker engine answers, else embedded Tansu), PostgreSQL (container or embedded), the
platform sandbox in-process, and one worker as a real child process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import TopicPartition

from streams.demo.feed import SELLERS, issued_event
from streams.kafka.clients import consumer as make_consumer
from streams.kafka.topics import ensure_topics
from streams.ledger.records import InvoiceKey
from streams.ledger.store import Ledger
from streams.local.processes import free_port
from streams.local.stack import local_stack
from streams.local.worker import WorkerProcess
from streams.processor.decode import content_hash
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.security.crypto import new_key
from streams.security.tokens import TokenStore
from streams.settings import Settings

APP_ID, APP_SECRET = "it-app", "it-secret-5e1f0c"
#: the e2e worker encrypts payloads, and its logs must never show this key
PAYLOAD_KEY = "it1:" + new_key()


@dataclass
class Services:
    bootstrap: str
    database_url: str
    data_dir: Path


@dataclass
class Pipeline:
    settings: Settings
    sandbox: SandboxServer
    worker: WorkerProcess
    #: an admin bearer token for the worker's HTTP API
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def worker_env(
    services: Services, sandbox_url: str, prefix: str, *, partitions: int,
    database_url: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """A test worker's settings: its own topics, group and data dir, this sandbox."""
    return {
        "INVOICE_SYNC_KAFKA_BOOTSTRAP": services.bootstrap,
        "INVOICE_SYNC_DATABASE_URL": database_url or services.database_url,
        "INVOICE_SYNC_PLATFORM_URL": sandbox_url,
        "INVOICE_SYNC_PLATFORM_APP_ID": APP_ID,
        "INVOICE_SYNC_PLATFORM_APP_SECRET": APP_SECRET,
        "INVOICE_SYNC_TOPIC_PREFIX": prefix,
        "INVOICE_SYNC_TOPIC_PARTITIONS": str(partitions),
        "INVOICE_SYNC_CONSUMER_GROUP": f"{prefix}group",
        "INVOICE_SYNC_KAFKA_SESSION_TIMEOUT": "6",
        "INVOICE_SYNC_DATA_DIR": str(services.data_dir / f"{prefix}worker"),
    }


@pytest.fixture(scope="session")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    data_dir = tmp_path_factory.mktemp("stack")
    async with local_stack(data_dir, prefer_containers=True) as stack:
        yield Services(stack.bootstrap, stack.database_url, data_dir)


@pytest.fixture(scope="module")
async def ledger(services: Services) -> AsyncIterator[Ledger]:
    """The session database's ledger, migrated."""
    async with Ledger(services.database_url, worker_id="test") as ledger:
        await ledger.migrate()
        yield ledger


async def insert_abandoned(database_url: str, body: dict[str, Any]) -> None:
    """Put ``body``'s invoice in the ledger as a worker that died mid-attempt leaves it:
    SUBMITTING, untouched for 200 s (longer than the sweep thresholds the tests use)."""
    event = issued_event(body)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO invoices (seller_tax_id, invoice_number, state, content_hash, kind, "
            "issue_date, total_with_tax, payload, source_event_id, created_at, updated_at) "
            "VALUES ($1, $2, 'SUBMITTING', $3, 'blue', $4, $5::numeric, $6, $7, "
            "now() - interval '200 seconds', now() - interval '200 seconds')",
            body["seller"]["tax_id"], body["invoice_number"], content_hash(body),
            date.fromisoformat(body["issue_date"]), body["total_with_tax"],
            orjson.dumps(event), event["event_id"],
        )  # fmt: skip
    finally:
        await conn.close()


def fresh_invoice_key() -> InvoiceKey:
    """A key no other test uses: the session database is shared, and the session's worker
    logs the keys it touches, so the seller is one no demo invoice names as a buyer."""
    return InvoiceKey(SELLERS[0][0], f"2611{uuid.uuid4().int % 10**16:016d}")


@pytest.fixture(scope="session")
async def pipeline(services: Services) -> AsyncIterator[Pipeline]:
    """One worker on topics unique to this session, against an in-process sandbox."""
    prefix = f"it-{uuid.uuid4().hex[:8]}."
    async with SandboxServer(apps={APP_ID: APP_SECRET}, faults=Faults()) as sandbox:
        env = {
            **worker_env(services, sandbox.url, prefix, partitions=3),
            "INVOICE_SYNC_RETRY_BASE_DELAY": "0.05",
            "INVOICE_SYNC_RECEIPT_POLL_INTERVAL": "0.2",
            "INVOICE_SYNC_ORIGINAL_WAIT_SECONDS": "20",
            "INVOICE_SYNC_PAYLOAD_KEY": PAYLOAD_KEY,
        }
        settings = Settings(
            kafka_bootstrap=services.bootstrap,
            database_url=services.database_url,  # type: ignore[arg-type]
            platform_url=sandbox.url,
            platform_app_id=APP_ID,
            platform_app_secret=APP_SECRET,  # type: ignore[arg-type]
            topic_prefix=prefix,
            topic_partitions=3,
        )
        await ensure_topics(services.bootstrap, settings.all_topics, partitions=3, replication=1)
        worker = WorkerProcess(
            env, http_port=free_port(), log_path=services.data_dir / f"{prefix}worker.log"
        )
        async with worker:
            async with Ledger(services.database_url, worker_id="tests") as ledger:
                token = await TokenStore(ledger).create(f"{prefix}admin", "admin")
            yield Pipeline(settings, sandbox, worker, token)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault-injection table, when the chaos scenarios ran."""
    from .chaos import table
    from .test_faults import REPORTS

    if REPORTS:
        terminalreporter.write_sep("=", "delivery guarantees under faults")
        terminalreporter.write_line(table(REPORTS))


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` up to the fetch high-water mark."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: list[Any] = []
        for _ in range(200):
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(messages)
            hw = [(await consumer.position(tp), consumer.highwater(tp)) for tp in tps]
            if all(h is not None and p >= h for p, h in hw):
                break
        return seen
    finally:
        await consumer.stop()
