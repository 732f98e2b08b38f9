"""Everything the worker owns besides faust itself, as one mode service.

Started before the agent processes anything (the agent waits on ``ready``) and
stopped after it, so the ledger pool, the platform session and the producer
outlive every batch in flight.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from mode import Service

from streams.api.server import ROUTE_ROLES, ApiServer, build_api
from streams.errors import InvoiceSyncError
from streams.kafka import clients
from streams.kafka.sink import ProducerSink
from streams.ledger.store import Ledger
from streams.observability.metrics import Metrics
from streams.platform.client import PlatformClient
from streams.processor.crashpoints import CrashPoints
from streams.processor.decode import Decoder
from streams.processor.delivery import Deliverer
from streams.processor.health import Health, probe_credentials
from streams.processor.intake import Intake
from streams.processor.messages import Messages, Topics
from streams.processor.pipeline import Processor
from streams.processor.receipts import ReceiptPoller
from streams.reconcile.leader import LeaderLock
from streams.reconcile.sweep import sweep
from streams.retry.backoff import Backoff
from streams.retry.circuit import CircuitBreaker, CircuitState
from streams.retry.ratelimit import TokenBucket
from streams.security.access import access_middleware
from streams.security.audit import failure_reason
from streams.security.crypto import cipher_from
from streams.security.tokens import TokenStore
from streams.settings import Settings
from streams.validation.rules import DomainRules
from streams.validation.today import beijing_today
from streams.worker.limits import open_files_needed, raise_open_file_limit

log = logging.getLogger(__name__)


class Runtime(Service):
    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.health = Health()
        self.metrics = Metrics()
        self.ready = asyncio.Event()
        self.ledger = Ledger(
            settings.database_url.get_secret_value(),
            worker_id=settings.worker_id,
            max_size=8,
            cipher=cipher_from(settings),
        )
        self.platform = PlatformClient.from_settings(settings)
        self.platform.observe = self.metrics.platform_request
        # aiokafka clients must be created inside the running loop.
        self.producer: AIOKafkaProducer | None = None
        self.processor: Processor | None = None
        self.intake: Intake | None = None
        self.api: ApiServer | None = None
        self.poller: ReceiptPoller | None = None
        self.breaker: CircuitBreaker | None = None
        self.sweep_leader = LeaderLock(settings.database_url.get_secret_value())

    async def on_start(self) -> None:
        s = self.settings
        await self.ledger.start()
        applied = await self.ledger.migrate()
        if applied:
            log.info("ledger migrated: %s", ", ".join(f"{m.version:04d}" for m in applied))
        # Here, where the log is set up, and before the pool opens its first socket.
        raise_open_file_limit(open_files_needed(s))
        await self.platform.start()
        self.producer = clients.producer(s)
        await self.producer.start()
        sink = ProducerSink(self.producer)
        messages = Messages(
            Topics(s.issued_topic, s.confirmed_topic, s.failed_topic, s.dlq_topic),
            s.worker_id,
            self.metrics,
        )
        crash = CrashPoints(s.fault_crash_at, s.fault_crash_after)
        self.breaker = CircuitBreaker(
            self.platform.health,
            threshold=s.breaker_threshold,
            probe_interval=s.breaker_probe_interval,
            on_change=self._circuit_changed,
        )
        # One bucket for uploads and receipt polls alike: the rate limit is the worker's.
        bucket = TokenBucket(s.platform_rate_limit)
        deliverer = Deliverer(
            self.platform,
            Backoff(s.retry_base_delay, s.retry_max_delay, s.retry_max_attempts),
            self.health,
            concurrency=s.platform_concurrency,
            breaker=self.breaker,
            bucket=bucket,
            crash=crash,
            auth_retry_seconds=s.platform_auth_retry_seconds,
            park_after=s.park_after_seconds,
            metrics=self.metrics,
        )
        self.processor = Processor(
            ledger=self.ledger,
            deliverer=deliverer,
            output=sink,
            decoder=Decoder(
                DomainRules.from_settings(s), max_bytes=s.max_message_bytes, today=beijing_today
            ),
            messages=messages,
            health=self.health,
            original_wait_seconds=s.original_wait_seconds,
            crash=crash,
            metrics=self.metrics,
        )
        self.intake = Intake(self.processor.process, depth=s.pipeline_depth)
        self.poller = ReceiptPoller(
            ledger=self.ledger,
            platform=self.platform,
            output=sink,
            messages=messages,
            interval=s.receipt_poll_interval,
            stuck_after=s.receipt_stuck_seconds,
            breaker=self.breaker,
            bucket=bucket,
        )
        access = access_middleware(TokenStore(self.ledger), ROUTE_ROLES)
        api = build_api(self.ledger, self.health, self.metrics, settings=s, middlewares=[access],
                        broker_check=self._producer_connected)  # fmt: skip
        self.api = ApiServer(api, s.http_host, s.http_port)
        await self.api.start()
        self.ready.set()
        log.info("worker %s ready", s.worker_id)

    async def _producer_connected(self) -> bool:
        """Whether the producer can reach a broker now: an open connection counts as is,
        otherwise one is opened (``AIOKafkaClient.ready``), so a broker back up reads ready."""
        if self.producer is None:
            return False
        client = self.producer.client
        for broker in client.cluster.brokers():
            if await client.ready(broker.nodeId):
                return True
        return False

    @Service.task
    async def _probe_credentials(self) -> None:
        # A 401 on a submission is learned only when there is something to submit: an
        # idle worker with a wrong secret would read ready. Probe at start and then
        # periodically, sooner while refused, so a fixed secret reads ready soon.
        await self.ready.wait()
        s = self.settings
        while not self.should_stop:
            verdict = await probe_credentials(self.platform, self.health)
            if verdict is not None:
                self.metrics.credentials_ok(verdict)
            ok = self.health.platform_credentials_ok
            await self.sleep(s.credentials_probe_seconds if ok else s.platform_auth_retry_seconds)

    def _circuit_changed(self, state: CircuitState) -> None:
        self.health.circuit = state.value
        self.metrics.circuit_state(state.value)

    @Service.task
    async def _poll_receipts(self) -> None:
        await self.ready.wait()
        assert self.poller is not None
        while not self.should_stop:
            try:
                await self.poller.poll_once()
            except InvoiceSyncError as exc:
                log.warning("receipt polling paused: %s", exc.message)
            await self.sleep(self.settings.receipt_poll_interval)

    @Service.task
    async def _finish_unfinished(self) -> None:
        await self.ready.wait()
        assert self.processor is not None
        s = self.settings
        while not self.should_stop:
            try:
                claimed = await self.ledger.unfinished(
                    parked_after=s.resume_interval, stale_after=s.resume_stale_seconds, limit=200
                )
                if claimed:
                    await self.processor.resume(claimed)
            except InvoiceSyncError as exc:
                log.warning("finishing parked invoices paused: %s", exc.message)
            await self.sleep(s.resume_interval)

    @Service.task
    async def _ledger_gauges(self) -> None:
        # Unfinished states come off their partial index, cheap every 15 s. CONFIRMED and
        # FAILED need a full scan (seconds at 5M rows, on every worker): every 40th round,
        # i.e. every 10 minutes, and first thing so the gauges start filled.
        await self.ready.wait()
        rounds = 0
        while not self.should_stop:
            try:
                summary = await self.ledger.state_summary(final=rounds % 40 == 0)
                self.metrics.ledger_summary(summary)
                rounds += 1
            except InvoiceSyncError as exc:
                log.info("ledger gauges skipped: %s", exc.message)
            await self.sleep(15)

    @Service.task
    async def _sweep(self) -> None:
        # Leader-only: two workers sweeping at once would re-publish the same invoices.
        await self.ready.wait()
        s = self.settings
        while not self.should_stop:
            try:
                if await self.sweep_leader.held():
                    await self._sweep_once()
            except (InvoiceSyncError, KafkaError, OSError) as exc:
                # Audited as failed already; the next round tries again.
                log.warning("sweep failed: %s", failure_reason(exc))
            await self.sleep(s.sweep_interval_seconds)

    async def _sweep_once(self) -> None:
        s = self.settings
        result = await sweep(self.ledger, s, s.sweep_stuck_seconds, actor=f"worker:{s.worker_id}")
        if not result.stuck:
            return
        self.metrics.swept(len(result.stuck))
        log.warning(
            "sweep: %d invoices stuck over %.0fs (%s); re-published %d, polled %d receipts "
            "(%d settled), skipped %d",
            len(result.stuck), s.sweep_stuck_seconds,
            ", ".join(f"{r.key} {r.state.value}" for r in result.stuck[:20]),
            len(result.republished.redriven), result.receipts_polled, result.receipts_settled,
            len(result.republished.skipped),
        )  # fmt: skip

    @Service.task
    async def _retention(self) -> None:
        days = self.settings.payload_retention_days
        if days is None:
            return
        await self.ready.wait()
        while not self.should_stop:
            try:
                dropped = await self.ledger.drop_old_payloads(days)
                if dropped:
                    log.info("retention: dropped %d payloads confirmed over %d days ago",
                             dropped, days)  # fmt: skip
            except InvoiceSyncError as exc:
                log.warning("retention paused: %s", exc.message)
            await self.sleep(3600)

    async def on_stop(self) -> None:
        if self.intake is not None:
            await self.intake.drain(timeout=self.settings.platform_timeout * 2)
        if self.breaker is not None:
            await self.breaker.close()
        if self.api is not None:
            await self.api.stop()
        if self.producer is not None:
            await self.producer.stop()
        await self.platform.close()
        await self.sweep_leader.release()
        await self.ledger.close()
