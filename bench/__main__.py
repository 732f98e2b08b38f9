"""``make bench`` / ``python -m bench``: ceilings, pipeline, ledger; one table, RATIOS last.

Environment:
  BENCH_SCALE           backlog sizes × this (1 = 100k/50k/10k invoices); default 1
  BENCH_LEDGER_ROWS     rows COPYed into the ledger for the lookup case; default 5,000,000
  BENCH_STEADY_SECONDS  how long the half-load phase offers invoices; default 30
  BENCH_STEADY_RATE     offer this many invoices/s instead of half the 0 ms rate (to
                        compare latency across runs or settings at the same load)
  BENCH_SKIP            comma list of: ceilings, latency, steady, rss, ledger
  BENCH_WORKERS         worker processes (one consumer group) per pipeline scenario; default 1
  BENCH_PYSPY           path to py-spy: profile the worker during the 0 ms run
  BENCH_PROFILE_OUT     where py-spy writes collapsed stacks; default /tmp/invoice-sync-profile.txt
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import ceilings, ledger
from bench.collector import collector_paused
from bench.pipeline import (
    APP_ID,
    APP_SECRET,
    PARTITIONS,
    Profile,
    Services,
    feed,
    run_backlog,
    run_steady,
    say,
)
from bench.report import Results, ratios_line, render
from bench.settle import WARM_SEGMENTS, settle, warm_wal
from streams.local.processes import set_parent_death_signal
from streams.local.stack import local_stack
from streams.sandbox.faults import Faults
from streams.sandbox.server import SandboxServer
from streams.settings import Settings
from streams.worker.limits import open_files_needed, raise_open_file_limit

#: POSTs per HTTP ceiling loop: ~10 s of them, so that a burst of this machine's speed
#: averages out as it does over the 0 ms run's 35-50 s. At 20,000 a loop lasted 3-4 s,
#: and one such burst set the ceiling at 8,276 req/s against 5,058 in the same run
#: (docs/performance.md, item 33).
HTTP_CEILING_POSTS = 50_000


def _service_name(pid: int) -> str:
    """What the table calls one of the stack's processes: PostgreSQL or Tansu."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            comm = f.read().strip()
    except OSError:
        return f"pid {pid}"
    return {"postgres": "PostgreSQL"}.get(comm, "Tansu" if comm.startswith("tansu") else comm)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


async def bench(data_dir: Path) -> Results:
    scale = _env_float("BENCH_SCALE", 1.0)
    ledger_rows = int(_env_float("BENCH_LEDGER_ROWS", 5_000_000))
    steady_seconds = _env_float("BENCH_STEADY_SECONDS", 30.0)
    steady_rate = _env_float("BENCH_STEADY_RATE", 0.0)
    skip = {s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()}
    py_spy = os.environ.get("BENCH_PYSPY")
    # One worker by default: the ratios then measure what one invoice costs one worker,
    # comparable run to run. BENCH_WORKERS=2 shows scale-out on the same two cores.
    workers = int(_env_float("BENCH_WORKERS", 1))
    profile = None
    if py_spy:
        out = Path(os.environ.get("BENCH_PROFILE_OUT", "/tmp/invoice-sync-profile.txt"))
        profile = Profile(py_spy, out)

    def n(base: int) -> int:
        return max(500, round(base * scale))

    concurrency = Settings().platform_concurrency
    # This process holds both ends of the platform's sockets, the sandbox's and, in the
    # ceiling's child process (which inherits the limit), the raw loop's.
    raise_open_file_limit(2 * open_files_needed(Settings()))
    run_id = int(time.time()) % 10**6 * 100  # distinct invoice numbers per scenario
    results = Results(scale=scale, stack="embedded", concurrency=concurrency, workers=workers)
    say(f"starting the embedded stack in {data_dir}")

    async def http_ceiling(feed_id: int) -> None:
        say(f"ceiling: {n(HTTP_CEILING_POSTS):,} signed POSTs at concurrency {concurrency}, "
            f"raw aiohttp (and at {concurrency // 2}) and our client")  # fmt: skip
        # Paused here too, as in the pipeline runs: the ceiling's sandbox must not be
        # slowed by the bench's own collector where the pipeline's is not.
        with collector_paused():
            async with SandboxServer(apps={APP_ID: APP_SECRET}, faults=Faults()) as sandbox:
                # The loop runs at the pipeline's concurrency. aiohttp's client lost
                # a third of its rate going from 512 to 1,024 connections where ours lost
                # none (docs/performance.md, item 38), so the raw loop also runs at half of
                # it and the higher counts: our setting must not lower the ceiling.
                concurrencies = dict.fromkeys((concurrency, max(1, concurrency // 2)))
                side = 0.0
                for i, conc in enumerate(concurrencies):
                    raw = await ceilings.http_ceiling(
                        sandbox.url, APP_ID, APP_SECRET, count=n(HTTP_CEILING_POSTS),
                        concurrency=conc, run_id=feed_id + 25 * i,
                    )  # fmt: skip
                    say(f"  aiohttp at {conc}: {raw.rate:,.0f} req/s")
                    results.http_runs.append((conc, raw.rate))
                    side = max(side, raw.rate)
                    if results.http is None or raw.rate > results.http.rate:
                        results.http, results.http_concurrency = raw, conc
                ours = await ceilings.http_ceiling(
                    sandbox.url, APP_ID, APP_SECRET, count=n(HTTP_CEILING_POSTS),
                    concurrency=concurrency, run_id=feed_id + 50, client="ours",
                )  # fmt: skip
                stored = sandbox.store.stored_count()
        results.http_sides.append(side)
        say(f"  ours {ours.rate:,.0f} req/s ({stored:,} stored by the sandbox)")
        if results.http_ours is None or ours.rate > results.http_ours.rate:
            results.http_ours = ours

    async with local_stack(data_dir, prefer_containers=False) as stack:
        processes = tuple((_service_name(pid), pid) for pid in stack.pids)
        services = Services(stack.bootstrap, stack.database_url, data_dir, workers, processes)
        results.stack = stack.kind
        say(f"PostgreSQL: {WARM_SEGMENTS} WAL segments made ready, as a running server has")
        await warm_wal(stack.database_url)
        if "ceilings" not in skip:
            say(f"ceiling: raw Kafka loop over {n(50_000):,} messages")
            results.kafka = await ceilings.kafka_ceiling(
                stack.bootstrap, feed(n(50_000), run_id + 1), partitions=PARTITIONS
            )
            say(f"  {results.kafka.rate:,.0f} msg/s")
            say(f"floor: the worker's faust app over {n(20_000):,} events, nothing behind it")
            results.faust = await ceilings.faust_floor(
                stack.bootstrap, feed(n(20_000), run_id + 8), partitions=PARTITIONS,
                data_dir=data_dir,
            )  # fmt: skip
            say(f"  {results.faust.rate:,.0f} events/s, "
                f"{results.faust.cpu_ms_per_item:.2f} ms CPU each")  # fmt: skip
            await http_ceiling(run_id + 2)
            say(f"ceiling: {n(4_000):,} signed POSTs at concurrency {concurrency}, 50 ms latency")
            faults = Faults(latency_ms=50)
            with collector_paused():
                async with SandboxServer(apps={APP_ID: APP_SECRET}, faults=faults) as sandbox:
                    results.http_50ms = await ceilings.http_ceiling(
                        sandbox.url, APP_ID, APP_SECRET, count=n(4_000),
                        concurrency=concurrency, run_id=run_id + 7,
                    )  # fmt: skip
            say(f"  {results.http_50ms.rate:,.0f} req/s")
        if "ledger" not in skip or "ceilings" not in skip:
            bench_db = await ledger.prepare(stack.database_url)
        if "ceilings" not in skip:
            say(f"ceiling: batched INSERT of {n(50_000):,} rows")
            results.postgres = await ceilings.postgres_ceiling(bench_db, rows=n(50_000))
            say(f"  {results.postgres.rate:,.0f} rows/s")

        results.at_0ms = await run_backlog(
            services, label="0ms", count=n(100_000), latency_ms=0, run_id=run_id + 3,
            profile=profile,
        )  # fmt: skip
        if "latency" not in skip:
            # Right after the 0 ms run, whose rate it is divided by: this machine's speed
            # drifts within a minute, and the ceiling and the steady phase between them
            # had put ~70 s of drift into the ratio (docs/performance.md, item 40).
            results.at_50ms = await run_backlog(
                services, label="50ms", count=n(50_000), latency_ms=50, run_id=run_id + 5
            )
        if "steady" not in skip:
            # Half of the 0 ms run's rate, offered as soon after it as the 50 ms run
            # allows: with the second ceiling between them, ~70 s of this machine's drift
            # decided how much of the machine half load took.
            results.steady = await run_steady(
                services, rate=steady_rate or max(1.0, results.at_0ms.rate / 2),
                seconds=steady_seconds,
                run_id=run_id + 4,
            )  # fmt: skip
        if "ceilings" not in skip:
            # This machine's speed drifts within minutes: the ceiling is measured on both
            # sides of the 0 ms run and the higher counts, so drift cannot flatter the ratio.
            # The backlog runs' debts are paid first, as the pipeline never runs beside them.
            await settle(stack.database_url)
            await http_ceiling(run_id + 9)
        if "rss" not in skip:
            results.rss_small = await run_backlog(
                services, label="rss-small", count=n(10_000), latency_ms=0, run_id=run_id + 6
            )
        if "ledger" not in skip:
            say(f"ledger: COPY {ledger_rows:,} rows into {ledger.DATABASE}")
            fill_s, index_s = await ledger.fill(bench_db, ledger_rows)
            say(f"  copied in {fill_s:.0f}s, indexes in {index_s:.0f}s; timing lookups")
            found, round_trip = await ledger.lookups(bench_db, ledger_rows)
            results.ledger = ledger.LedgerResult(ledger_rows, fill_s, index_s, found, round_trip)
    if scale != 1.0:
        results.notes.append(
            f"BENCH_SCALE={scale:g}: backlogs are {n(100_000):,} / {n(50_000):,} / "
            f"{n(10_000):,} instead of 100k / 50k / 10k (RSS ratio compares those two)."
        )
    if steady_rate:
        results.notes.append(f"BENCH_STEADY_RATE={steady_rate:g}: the steady phase offered "
                             "that rate, not half the 0 ms rate.")  # fmt: skip
    if ledger_rows != 5_000_000:
        results.notes.append(f"BENCH_LEDGER_ROWS={ledger_rows:,} instead of 5,000,000.")
    return results


async def main() -> int:
    # If make or the terminal goes away we get SIGTERM and still stop PostgreSQL.
    set_parent_death_signal(signal.SIGTERM)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    data_dir = Path(tempfile.mkdtemp(prefix="invoice-sync-bench-"))
    began = time.monotonic()
    try:
        results = await bench(data_dir)
    except BaseException:
        say(f"failed; logs kept in {data_dir / 'logs'}")
        raise
    shutil.rmtree(data_dir, ignore_errors=True)
    say(f"done in {time.monotonic() - began:.0f}s")
    print(render(results))
    print(ratios_line(results), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except asyncio.CancelledError:
        sys.exit(130)
