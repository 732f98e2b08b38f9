"""``make run`` / ``invoice-sync demo`` and ``invoice-sync up``: the whole pipeline on the
embedded stack, a demo feed through it, and a summary of what happened."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from aiokafka import AIOKafkaProducer

from streams.demo.feed import FeedItem, generate
from streams.demo.summary import print_summary
from streams.demo.tracker import OutcomeTracker
from streams.kafka.topics import ensure_topics
from streams.ledger.store import Ledger
from streams.local.processes import free_port, set_parent_death_signal
from streams.local.stack import local_stack
from streams.local.worker import WorkerProcess
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.security.audit import AuditLog, cli_actor
from streams.security.tokens import TokenStore
from streams.settings import Settings
from streams.validation.today import beijing_today


@dataclass
class LocalPipeline:
    settings: Settings
    bootstrap: str
    database_url: str
    sandbox: SandboxServer
    worker: WorkerProcess
    http_port: int


@asynccontextmanager
async def local_pipeline(
    settings: Settings, *, faults: Faults | None
) -> AsyncIterator[LocalPipeline]:
    """Embedded PostgreSQL + Tansu + sandbox + one worker process, all stopped on exit."""
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        click.echo(f"• PostgreSQL (embedded, ledger kept in {data / 'postgres'})")
        click.echo("• Kafka-compatible broker (embedded Tansu, in memory)")
        services = await stack.enter_async_context(local_stack(data, prefer_containers=False))
        secret = settings.platform_app_secret.get_secret_value()
        sandbox = await stack.enter_async_context(
            SandboxServer(apps={settings.platform_app_id: secret}, faults=faults, admin=True)
        )
        click.echo(f"• tax-platform sandbox on {sandbox.url}")
        await ensure_topics(services.bootstrap, settings.all_topics,
                            partitions=settings.topic_partitions,
                            replication=1)  # fmt: skip
        # A fixed default port could be taken on a developer's machine; honour it only
        # when asked for explicitly.
        port = settings.http_port if "http_port" in settings.model_fields_set else free_port()
        env = {
            "INVOICE_SYNC_KAFKA_BOOTSTRAP": services.bootstrap,
            "INVOICE_SYNC_DATABASE_URL": services.database_url,
            "INVOICE_SYNC_PLATFORM_URL": sandbox.url,
            "INVOICE_SYNC_DATA_DIR": str(data),
            # Tansu joins a group in about half the session timeout (embedded-stack.md).
            "INVOICE_SYNC_KAFKA_SESSION_TIMEOUT": "6",
            "INVOICE_SYNC_RECEIPT_POLL_INTERVAL": "0.5",
        }
        click.echo(f"• worker (log: {logs / 'worker.log'})")
        worker = await stack.enter_async_context(
            WorkerProcess(env, http_port=port, log_path=logs / "worker.log")
        )
        yield LocalPipeline(
            settings, services.bootstrap, services.database_url, sandbox, worker, port
        )


async def _admin_token(database_url: str) -> str:
    """The local default stays one command: it makes its own admin token."""
    async with Ledger(database_url, worker_id="demo") as ledger:
        name = f"local-admin-{datetime.now(UTC):%Y%m%d%H%M%S}"
        token = await TokenStore(ledger).create(name, "admin")
        await AuditLog(ledger).record(cli_actor(), "token.create", target=name,
                                      detail={"role": "admin", "by": "demo"})  # fmt: skip
    return token


async def _publish(bootstrap: str, topic: str, items: list[FeedItem]) -> dict[bytes, float]:
    """Publish like a billing system would; returns when each key was (last) sent."""
    sent_at: dict[bytes, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for item in items:
            sent_at[item.key] = time.time()
            futures.append(await producer.send(topic, item.value, key=item.key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent_at


async def run_demo(settings: Settings, *, count: int, serve: bool, timeout: float) -> int:
    """Returns the exit status: 0 when done, 130 when interrupted (Ctrl-C, SIGTERM)."""
    # If whatever started us dies (make killed, terminal closed), we get SIGTERM and
    # tear everything down instead of leaving a broker and a database behind.
    set_parent_death_signal(signal.SIGTERM)
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    loop.add_signal_handler(signal.SIGINT, main.cancel)
    try:
        return await _demo(settings, count=count, serve=serve, timeout=timeout)
    except asyncio.CancelledError:
        click.echo("\nStopped the worker, sandbox, broker and database.", err=True)
        # For `up`, Ctrl-C is the way to stop; for `demo` it cut the run short.
        return 0 if serve else 130


async def _demo(settings: Settings, *, count: int, serve: bool, timeout: float) -> int:
    click.echo("Starting the local pipeline:")
    async with local_pipeline(settings, faults=Faults.profile("demo")) as pipe:
        tracker = OutcomeTracker(pipe.bootstrap, settings.confirmed_topic,
                                 settings.failed_topic, settings.dlq_topic)  # fmt: skip
        await tracker.start()
        try:
            items = list(generate(count, today=beijing_today(), run_id=int(time.time())))
            click.echo(f"\nPublishing {len(items)} issued invoices to {settings.issued_topic} …")
            started = time.monotonic()
            await _publish(pipe.bootstrap, settings.issued_topic, items)
            keys = {item.key for item in items}
            settled = await _follow(tracker, keys, timeout)
            elapsed = time.monotonic() - started
            print_summary(items, tracker.outcomes, pipe.sandbox, settings, elapsed=elapsed)
            if settled < len(keys):
                click.echo(f"\n{len(keys) - settled} invoices had no outcome after {timeout:.0f}s; "
                           f"see {settings.data_dir / 'logs' / 'worker.log'}",
                           err=True)  # fmt: skip
        finally:
            await tracker.stop()
        token = await _admin_token(pipe.database_url)
        click.echo(f"\nAn admin token for the worker's HTTP API (shown once):\n  {token}")
        if serve:
            click.echo(
                f"\nServing until Ctrl-C:\n"
                f"  INVOICE_SYNC_KAFKA_BOOTSTRAP={pipe.bootstrap}\n"
                f"  INVOICE_SYNC_DATABASE_URL={pipe.database_url}\n"
                f"  INVOICE_SYNC_PLATFORM_URL={pipe.sandbox.url}\n"
                f"  worker API: http://127.0.0.1:{pipe.http_port}/readyz\n"
                f"  curl -H 'Authorization: Bearer {token}' "
                f"http://127.0.0.1:{pipe.http_port}/invoices/SELLER/NUMBER"
            )
            await asyncio.Event().wait()
    click.echo("Stopped the worker, sandbox, broker and database.")
    return 0


async def _follow(tracker: OutcomeTracker, keys: set[bytes], timeout: float) -> int:
    """A progress bar over invoices reaching an outcome; returns how many did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    done = 0
    with click.progressbar(length=len(keys), label="Processing", show_pos=True,
                           show_eta=False) as bar:  # fmt: skip
        while done < len(keys) and loop.time() < deadline:
            tracker.changed.clear()
            now_done = sum(1 for key in keys if tracker.outcomes.settled(key))
            bar.update(now_done - done)
            done = now_done
            if done < len(keys):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracker.changed.wait(), timeout=1.0)
    return done
