"""The pipeline end to end: real worker processes, the in-process sandbox, Tansu, PostgreSQL.

Each scenario gets its own topic prefix and consumer group, its own sandbox and fresh
worker processes (``BENCH_WORKERS``, 1 by default, in one group); the broker and the
database are shared. "Confirmed" is the
``invoices.confirmed`` record's timestamp (taken by the worker's producer); "issued"
is when the bench handed the record to its producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.ceilings import publish
from bench.collector import collector_paused
from bench.procstat import (
    RssSampler,
    busy_seconds,
    cpu_seconds,
    main_thread_schedstat,
    memory_kb,
    tree_cpu_seconds,
)
from bench.publisher import SteadyPublisher
from bench.settle import settle
from streams.demo.feed import FeedItem, generate
from streams.kafka.sink import ProducerSink
from streams.kafka.topics import ensure_topics
from streams.local.processes import free_port
from streams.local.worker import WorkerProcess
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.validation.today import beijing_today

APP_ID, APP_SECRET = "bench-app", "bench-secret"
PARTITIONS = 4  # the worker's default INVOICE_SYNC_TOPIC_PARTITIONS


def say(message: str) -> None:
    """Progress goes to stderr; stdout holds only the table and the RATIOS line."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def feed(count: int, run_id: int) -> list[FeedItem]:
    """``count`` valid, distinct blue invoices (every one should end confirmed)."""
    return list(generate(count, today=beijing_today(), run_id=run_id, invalid_fraction=0,
                         red_fraction=0, resend_fraction=0))  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Services:
    bootstrap: str
    database_url: str
    data_dir: Path
    #: worker processes per scenario (``BENCH_WORKERS``)
    workers: int = 1
    #: the broker's and the database's processes, by name, when they run on this machine
    processes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Profile:
    """Run py-spy against the worker once it is ready (``BENCH_PYSPY``)."""

    py_spy: str
    output: Path
    duration: int = 20


@dataclass(frozen=True)
class RunResult:
    label: str
    platform_latency_ms: float
    invoices: int
    confirmed: int
    failed: int
    seconds: float
    cpu_ms_per_invoice: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    #: shares of the timed phase the workers' event-loop threads ran, and waited for a core
    loop_running: float
    loop_waiting: float
    #: the whole machine's CPU per invoice (ms) by part, the workers' first
    machine_ms: tuple[tuple[str, float], ...] = ()
    #: the share of all cores' time that was not idle over the timed phase
    busy: float = math.nan

    @property
    def rate(self) -> float:
        return self.confirmed / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.confirmed == self.invoices


@dataclass(frozen=True)
class TailSpread:
    """When the slowest invoices of a phase were issued. A stall (a pause of one process,
    a slow stretch of the machine) puts most of them in a second or two; a steadily busy
    machine spreads them over the phase."""

    seconds_with_slow: int
    seconds: int
    #: the share of them issued in the second that holds the most, and that second
    busiest_share: float
    busiest_at: int


def tail_spread(samples: Sequence[tuple[float, float]], threshold_ms: float) -> TailSpread:
    """``samples`` are (seconds into the phase when issued, latency ms); the slow ones are
    those at ``threshold_ms`` or more."""
    slow = [int(at) for at, latency in samples if latency >= threshold_ms]
    seconds = int(max((at for at, _ in samples), default=0.0)) + 1
    if not slow:
        return TailSpread(0, seconds, 0.0, 0)
    per_second = Counter(slow)
    busiest_at, most = max(per_second.items(), key=lambda item: (item[1], -item[0]))
    return TailSpread(len(per_second), seconds, most / len(slow), busiest_at)


@dataclass(frozen=True)
class SteadyResult:
    offered_rate: float
    seconds: float
    invoices: int
    confirmed: int
    measured: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_invoice: float
    #: as ``RunResult``'s, over the phase (the bench process also publishes here)
    machine_ms: tuple[tuple[str, float], ...] = ()
    busy: float = math.nan
    #: when its slowest 1 % (p99 and above) were issued
    tail: TailSpread | None = None


class Outcomes:
    """Follows confirmed/failed/DLQ from the start: first confirmation time of each key."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.confirmed_topic = f"{prefix}invoices.confirmed"
        self._consumer = AIOKafkaConsumer(
            self.confirmed_topic, f"{prefix}invoices.failed", f"{prefix}invoices.dlq",
            bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            # A confirmation's time is its record's timestamp, set by the worker's
            # producer, so how soon we fetch it changes no figure; a long poll spares
            # the broker on the same two cores (an idle fetch is held for the wait).
            enable_auto_commit=False, fetch_max_wait_ms=500,
        )  # fmt: skip
        self.confirmed_at: dict[bytes, float] = {}
        self.failed = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in batches.items():
                if tp.topic != self.confirmed_topic:
                    self.failed += len(messages)
                    continue
                for m in messages:
                    self.confirmed_at.setdefault(m.key or b"", m.timestamp / 1000)
            if batches:
                self._changed.set()

    async def wait_for(self, count: int, timeout: float, label: str) -> bool:
        """Until ``count`` invoices are settled (confirmed or failed); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_note = loop.time() + 10
        while len(self.confirmed_at) + self.failed < count:
            if loop.time() > deadline:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
            if loop.time() >= next_note:
                say(f"  {label}: {len(self.confirmed_at):,}/{count:,} confirmed")
                next_note = loop.time() + 10
        return True


class Workers:
    """``count`` worker processes in one consumer group, as a deployment scales out.
    CPU is their sum; RSS is per process, the largest of them."""

    def __init__(self, env: dict[str, str], count: int, logs: Path, label: str) -> None:
        self.processes = [
            WorkerProcess({**env, "INVOICE_SYNC_WORKER_ID": f"bench-{label}-{i}",
                           "INVOICE_SYNC_DATA_DIR": f"{env['INVOICE_SYNC_DATA_DIR']}-{i}"},
                          http_port=free_port(), log_path=logs / f"worker-{label}-{i}.log")
            for i in range(count)
        ]  # fmt: skip
        self._samplers: list[RssSampler] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.processes))
        await self._settled()
        self._samplers = [RssSampler(pid) for pid in self.pids]
        for sampler in self._samplers:
            sampler.start()

    async def _settled(self, timeout: float = 60.0) -> None:
        """Until the group has shared out every partition: a worker that is ready may
        still be about to give half its partitions to one joining after it, and that
        rebalance would stall the measurement for seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                counts = [await _assigned(session, p.http_port) for p in self.processes]
                if sum(counts) == PARTITIONS and (len(counts) > PARTITIONS or min(counts) > 0):
                    return
                if loop.time() > deadline:
                    raise TimeoutError(f"partitions per worker still {counts} after {timeout}s")
                await asyncio.sleep(0.2)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def loop_seconds(self) -> tuple[float, float]:
        """Seconds the event-loop threads have run, and waited for a core, summed."""
        stats = [main_thread_schedstat(pid) for pid in self.pids]
        return sum(s[0] for s in stats), sum(s[1] for s in stats)

    async def stop_sampling(self) -> int:
        """Stops the RSS samplers; the peak of the largest worker, in kB."""
        peaks = []
        for sampler in self._samplers:
            await sampler.stop()
            hwm = memory_kb(sampler.pid).get("VmHWM", 0)
            peaks.append(max(sampler.peak_kb, hwm))
        return max(peaks, default=0)

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes))


class MachineMeter:
    """Where the machine's CPU went over a timed phase: the workers, this process (the
    sandbox and the collector), and the broker's and the database's process trees. Read
    from ``/proc`` at the two ends of the phase, so nothing runs during it."""

    def __init__(self, workers: Workers, services: Services) -> None:
        bench_pid = os.getpid()
        self._parts: list[tuple[str, Callable[[], float]]] = [
            ("worker" if len(workers.processes) == 1 else "workers", workers.cpu_seconds),
            ("bench process (sandbox)", lambda: cpu_seconds(bench_pid)),
            *((name, partial(tree_cpu_seconds, pid)) for name, pid in services.processes),
        ]
        self._start: list[float] = []
        self._busy: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        self._start = [read() for _, read in self._parts]
        self._busy = busy_seconds()

    def stop(self, invoices: int) -> tuple[tuple[tuple[str, float], ...], float]:
        """CPU ms per invoice by part, and the share of all cores' time that was busy."""
        per = 1000 / max(1, invoices)
        used = tuple(
            (name, (read() - start) * per)
            for (name, read), start in zip(self._parts, self._start, strict=True)
        )
        busy, total = (now - then for now, then in zip(busy_seconds(), self._busy, strict=True))
        return used, busy / total if total > 0 else math.nan


async def _assigned(session: aiohttp.ClientSession, port: int) -> int:
    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
        body = await response.json()
    return int(body.get("assigned_partitions") or 0)


@asynccontextmanager
async def _running(
    services: Services, label: str, latency_ms: float
) -> AsyncIterator[tuple[str, Outcomes, Workers, SandboxServer]]:
    """Topics and a sandbox for one scenario; the workers are started by the caller."""
    await settle(services.database_url)
    prefix = f"bench-{label}-{uuid.uuid4().hex[:6]}."
    topics = [f"{prefix}invoices.{name}" for name in ("issued", "confirmed", "failed", "dlq")]
    await ensure_topics(services.bootstrap, topics, partitions=PARTITIONS, replication=1)
    outcomes = Outcomes(services.bootstrap, prefix)
    await outcomes.start()
    try:
        faults = Faults(latency_ms=latency_ms)
        async with SandboxServer(apps={APP_ID: APP_SECRET}, faults=faults) as sandbox:
            env = {
                "INVOICE_SYNC_KAFKA_BOOTSTRAP": services.bootstrap,
                "INVOICE_SYNC_DATABASE_URL": services.database_url,
                "INVOICE_SYNC_PLATFORM_URL": sandbox.url,
                "INVOICE_SYNC_PLATFORM_APP_ID": APP_ID,
                "INVOICE_SYNC_PLATFORM_APP_SECRET": APP_SECRET,
                "INVOICE_SYNC_TOPIC_PREFIX": prefix,
                "INVOICE_SYNC_CONSUMER_GROUP": f"{prefix}group",
                "INVOICE_SYNC_KAFKA_SESSION_TIMEOUT": "6",
                "INVOICE_SYNC_DATA_DIR": str(services.data_dir / "worker"),
                "INVOICE_SYNC_LOG_LEVEL": "INFO",
            }
            workers = Workers(env, services.workers, services.data_dir / "logs", label)
            try:
                with collector_paused():
                    yield topics[0], outcomes, workers, sandbox
            finally:
                await workers.stop()
    finally:
        await outcomes.stop()


async def run_backlog(
    services: Services,
    *,
    label: str,
    count: int,
    latency_ms: float,
    run_id: int,
    profile: Profile | None = None,
) -> RunResult:
    """Publish ``count`` invoices, then start the worker and time it to the last one."""
    items = feed(count, run_id)
    async with _running(services, label, latency_ms) as (issued, outcomes, workers, _):
        say(f"{label}: publishing a backlog of {count:,} invoices")
        sent_at = await publish(services.bootstrap, issued, items)
        say(f"{label}: starting {len(workers.processes)} worker process(es) "
            f"(sandbox latency {latency_ms:.0f} ms)")  # fmt: skip
        await workers.start()
        ready = time.time()
        meter = MachineMeter(workers, services)
        meter.start()
        loop0, began = workers.loop_seconds(), time.monotonic()
        spy = await _start_profile(profile, workers.pids[0])
        done = await outcomes.wait_for(count, timeout=120 + count / 50, label=label)
        loop1, timed = workers.loop_seconds(), (time.monotonic() - began) * len(workers.pids)
        machine_ms, busy = meter.stop(len(outcomes.confirmed_at))
        peak_kb = await workers.stop_sampling()
        if spy is not None:
            await spy.wait()
        if not done:
            say(f"{label}: TIMED OUT; see {services.data_dir / 'logs'}")
        times = outcomes.confirmed_at
        first = min(min(times.values(), default=ready), ready)
        last = max(times.values(), default=ready)
        latencies = [(times[k] - sent_at[k]) * 1000 for k in times if k in sent_at]
        result = RunResult(
            label=label, platform_latency_ms=latency_ms, invoices=count,
            confirmed=len(times), failed=outcomes.failed, seconds=last - first,
            cpu_ms_per_invoice=machine_ms[0][1],
            p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
            peak_rss_mb=peak_kb / 1024, loop_running=(loop1[0] - loop0[0]) / timed,
            loop_waiting=(loop1[1] - loop0[1]) / timed, machine_ms=machine_ms, busy=busy,
        )  # fmt: skip
        say(f"{label}: {result.confirmed:,} confirmed in {result.seconds:.1f}s "
            f"= {result.rate:,.0f}/s, {result.cpu_ms_per_invoice:.2f} ms CPU each, "
            f"peak RSS {result.peak_rss_mb:.0f} MB")  # fmt: skip
        return result


async def _start_profile(profile: Profile | None, pid: int) -> asyncio.subprocess.Process | None:
    if profile is None:
        return None
    say(f"  py-spy record for {profile.duration}s -> {profile.output}")
    return await asyncio.create_subprocess_exec(
        profile.py_spy, "record", "--pid", str(pid), "--duration", str(profile.duration),
        "--rate", "100", "--format", "raw", "-o", str(profile.output),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def run_steady(
    services: Services, *, rate: float, seconds: float, run_id: int, warmup: float = 2.0
) -> SteadyResult:
    """Offer ``rate`` invoices/s for ``seconds`` to an idle worker; latency of each."""
    count = max(1, round(rate * seconds))
    items = feed(count, run_id)
    async with _running(services, "steady", 0.0) as (issued, outcomes, workers, _):
        await workers.start()
        await asyncio.sleep(1.0)
        say(f"steady: offering {rate:,.0f} invoices/s for {seconds:.0f}s")
        meter = MachineMeter(workers, services)
        meter.start()
        sent_at: dict[bytes, float] = {}
        # No linger of the producer's own: the publisher lingers, then hands over whole
        # batches, which should go at once.
        producer = AIOKafkaProducer(bootstrap_servers=services.bootstrap, acks="all")
        await producer.start()
        try:
            # Each invoice's time starts when it is handed over, so its linger is in
            # every latency; one batch per invoice made Tansu's CPU climb through the
            # phase (docs/performance.md, items 16 and 26).
            publisher = SteadyPublisher(ProducerSink(producer), issued)
            loop = asyncio.get_running_loop()
            started = loop.time()
            wall0 = time.time()
            sent = 0
            while sent < count:
                due = min(count, int((loop.time() - started) * rate) + 1)
                while sent < due:
                    item = items[sent]
                    sent_at[item.key] = time.time()
                    publisher.add(item.key, item.value)
                    sent += 1
                await publisher.send_due()
                await asyncio.sleep(0.005)
            await publisher.close()
        finally:
            await producer.stop()
        await outcomes.wait_for(count, timeout=120, label="steady")
        times = outcomes.confirmed_at
        machine_ms, busy = meter.stop(len(times))
        samples = [
            (sent_at[k] - wall0, (times[k] - sent_at[k]) * 1000)
            for k in times
            if k in sent_at and sent_at[k] >= wall0 + warmup
        ]
        latencies = [latency for _, latency in samples]
        p99 = percentile(latencies, 99)
        result = SteadyResult(
            offered_rate=rate, seconds=seconds, invoices=count, confirmed=len(times),
            measured=len(latencies), p50_ms=percentile(latencies, 50),
            p99_ms=p99, max_ms=max(latencies, default=math.nan),
            cpu_ms_per_invoice=machine_ms[0][1], machine_ms=machine_ms, busy=busy,
            tail=tail_spread(samples, p99),
        )  # fmt: skip
        say(f"steady: p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms")
        return result
