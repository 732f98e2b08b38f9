"""One table and the RATIOS line (the last line, for scripts that track it)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from bench.ceilings import Ceiling
from bench.ledger import LedgerResult
from bench.pipeline import RunResult, SteadyResult


@dataclass
class Results:
    scale: float
    stack: str
    #: concurrent platform requests, in the ceiling loops and the worker alike
    concurrency: int = 0
    #: worker processes in each pipeline scenario
    workers: int = 1
    kafka: Ceiling | None = None
    faust: Ceiling | None = None
    #: the issue's ceiling: a raw aiohttp POST loop
    http: Ceiling | None = None
    #: every raw HTTP loop run, as (concurrency, req/s): before and after the 0 ms run,
    #: at the pipeline's concurrency and at half of it; ``http`` is the highest
    http_runs: list[tuple[int, float]] = field(default_factory=list)
    #: the concurrency of the run that set ``http``
    http_concurrency: int = 0
    #: the highest raw HTTP rate of each side of the backlog runs, before and after
    http_sides: list[float] = field(default_factory=list)
    #: the same loop through our ``PlatformClient``: what one POST costs the worker
    http_ours: Ceiling | None = None
    http_50ms: Ceiling | None = None
    postgres: Ceiling | None = None
    at_0ms: RunResult | None = None
    at_50ms: RunResult | None = None
    steady: SteadyResult | None = None
    rss_small: RunResult | None = None
    ledger: LedgerResult | None = None
    notes: list[str] = field(default_factory=list)


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def ratios(r: Results) -> dict[str, float]:
    rate0 = r.at_0ms.rate if r.at_0ms else None
    return {
        "http": _ratio(rate0, r.http.rate if r.http else None),
        "kafka": _ratio(rate0, r.kafka.rate if r.kafka else None),
        "latency": _ratio(r.at_50ms.rate if r.at_50ms else None, rate0),
        "rss": _ratio(
            r.at_0ms.peak_rss_mb if r.at_0ms else None,
            r.rss_small.peak_rss_mb if r.rss_small else None,
        ),
        "p99_ms": r.steady.p99_ms if r.steady else math.nan,
    }


def ratios_line(r: Results) -> str:
    v = ratios(r)
    return (f"RATIOS http={v['http']:.2f} kafka={v['kafka']:.2f} latency={v['latency']:.2f} "
            f"rss={v['rss']:.2f} p99_ms={v['p99_ms']:.0f}")  # fmt: skip


#: ceiling loops on the two sides of the backlog runs this far apart mean the machine
#: changed speed in between: 13,466 and then 3,923 req/s in one run (item 40)
DRIFT = 1.5


def drift_note(r: Results) -> str | None:
    """A warning when the machine's own speed moved during the run."""
    if len(r.http_sides) != 2 or min(r.http_sides) <= 0:
        return None
    before, after = r.http_sides
    if max(before, after) / min(before, after) < DRIFT:
        return None
    return (f"NOTE: this machine changed speed during the run: the raw HTTP loop read "
            f"{before:,.0f} req/s before the backlog runs and {after:,.0f} after. Ratios "
            "compare phases minutes apart; this run's say more about the machine than the "
            "pipeline.")  # fmt: skip


def _sandbox_cpu(ceiling: Ceiling) -> str:
    if ceiling.server_cpu_ms_per_item is None:
        return ""
    return f", sandbox {ceiling.server_cpu_ms_per_item:.2f}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _run_rows(label: str, run: RunResult, post_ms: float | None) -> list[tuple[str, str, str]]:
    # The target's intent: one POST is the floor of the cost, the rest should cost less.
    cost = "" if not post_ms else f"{run.cpu_ms_per_invoice / post_ms:.1f} × one POST's client CPU"
    incomplete = "" if run.complete else f" (INCOMPLETE: {run.failed} failed / timed out)"
    return [
        (label, f"{run.rate:,.0f} invoices/s",
         f"{run.confirmed:,}/{run.invoices:,} confirmed in {run.seconds:.1f}s{incomplete}"),
        ("  worker CPU per invoice", f"{run.cpu_ms_per_invoice:.2f} ms", cost),
        *_machine_rows(run.machine_ms, run.busy),
        ("  worker event loop's thread", f"{run.loop_running:.0%} running",
         f"{run.loop_waiting:.0%} waiting for a core (schedstat)"),
        ("  issued→confirmed p50 / p99", f"{run.p50_ms:,.0f} / {run.p99_ms:,.0f} ms",
         "backlog: mostly time queued"),
        ("  worker peak RSS", f"{run.peak_rss_mb:.0f} MB", ""),
    ]  # fmt: skip


def _machine_rows(
    machine_ms: tuple[tuple[str, float], ...], busy: float
) -> list[tuple[str, str, str]]:
    """Where the whole machine's CPU went per invoice: on two cores the HTTP ratio is a
    budget shared by everything here (docs/performance.md, "Where the time goes")."""
    if not machine_ms:
        return []
    parts = ", ".join(f"{name} {ms:.2f}" for name, ms in machine_ms)
    total = sum(ms for _, ms in machine_ms)
    return [("  whole machine's CPU per invoice", f"{total:.2f} ms",
             f"{parts}; cores {busy:.0%} busy")]  # fmt: skip


def render(r: Results) -> str:
    rows: list[tuple[str, str, str]] = []
    if r.kafka:
        rows.append(("ceiling: raw aiokafka consume→produce", f"{r.kafka.rate:,.0f} msg/s",
                     f"{r.kafka.count:,} msgs, 4 partitions, commit per batch"))  # fmt: skip
    if r.http:
        rows.append(
            (
                f"ceiling: raw aiohttp signed POST loop, conc. {r.http_concurrency}",
                f"{r.http.rate:,.0f} req/s",
                f"{r.http.count:,} POSTs, client {r.http.cpu_ms_per_item:.2f} ms CPU each"
                f"{_sandbox_cpu(r.http)}; highest of "
                + ", ".join(f"{rate:,.0f} (conc. {conc})" for conc, rate in r.http_runs),
            )
        )
    if r.http_ours:
        rows.append(
            (
                "  same POSTs through our PlatformClient",
                f"{r.http_ours.rate:,.0f} req/s",
                f"client {r.http_ours.cpu_ms_per_item:.2f} ms CPU each (pyreqwest); "
                "bound by the sandbox, not a ratio's base",
            )
        )
    if r.http_50ms:
        rows.append(
            (
                "ceiling: same loop, sandbox at 50 ms",
                f"{r.http_50ms.rate:,.0f} req/s",
                f"Little's law: concurrency ÷ latency = {r.concurrency} ÷ 0.05 s"
                f" = {r.concurrency / 0.05:,.0f}/s",
            )
        )
    if r.faust:
        rows.append(("floor: the worker's faust agent, acking only", f"{r.faust.rate:,.0f} ev/s",
                     f"{r.faust.count:,} events, {r.faust.cpu_ms_per_item:.2f} ms CPU each, "
                     "all threads"))  # fmt: skip
    if r.postgres:
        rows.append(("ceiling: asyncpg batched INSERT (500/tx)", f"{r.postgres.rate:,.0f} rows/s",
                     f"{r.postgres.count:,} rows with 1 KB payload"))  # fmt: skip
    # What one POST costs the worker is what it costs our own client.
    base = r.http_ours or r.http
    post = base.cpu_ms_per_item if base else None
    if r.at_0ms:
        rows += _run_rows(f"pipeline, sandbox 0 ms, backlog {r.at_0ms.invoices:,}", r.at_0ms, post)
    if r.at_50ms:
        rows += _run_rows(f"pipeline, sandbox 50 ms, backlog {r.at_50ms.invoices:,}", r.at_50ms,
                          post)  # fmt: skip
    if r.steady:
        s = r.steady
        rows.append(
            (
                f"steady load {s.offered_rate:,.0f}/s (½ max), sandbox 0 ms",
                f"p99 {s.p99_ms:,.0f} ms",
                f"p50 {s.p50_ms:,.0f} ms, max {s.max_ms:,.0f} ms over {s.measured:,} "
                f"invoices after 2 s warm-up; {s.cpu_ms_per_invoice:.2f} ms CPU each",
            )
        )
        rows += _machine_rows(s.machine_ms, s.busy)
        if s.tail and s.tail.seconds_with_slow:
            t = s.tail
            rows.append(("  slowest 1 % (p99 and above), when issued",
                         f"in {t.seconds_with_slow} of {t.seconds} s",
                         f"{t.busiest_share:.0%} of them in one second ({t.busiest_at} s in); "
                         "a stall bunches them, a busy machine spreads them"))  # fmt: skip
    if r.rss_small and r.at_0ms:
        rows.append((f"worker peak RSS, backlog {r.rss_small.invoices:,}",
                     f"{r.rss_small.peak_rss_mb:.0f} MB",
                     f"{r.rss_small.rate:,.0f} invoices/s on this backlog"))  # fmt: skip
        rows.append((f"worker peak RSS, backlog {r.at_0ms.invoices:,}",
                     f"{r.at_0ms.peak_rss_mb:.0f} MB", "the 0 ms run above"))  # fmt: skip
    if r.ledger:
        rows.append(
            (
                f"ledger: COPY {r.ledger.rows:,} rows",
                f"{r.ledger.fill_seconds:.0f} s",
                f"+ {r.ledger.index_seconds:.0f} s building the migration's indexes",
            )
        )
        for lookup in r.ledger.lookups:
            timing = f"p50 {lookup.p50_ms:.2f} / p99 {lookup.p99_ms:.2f} ms"
            rows.append((f"  {lookup.name}", timing, lookup.plan))
        alone = r.ledger.round_trip
        rows.append((f"  {alone.name}", f"p50 {alone.p50_ms:.2f} / p99 {alone.p99_ms:.2f} ms",
                     "the machine's floor for any lookup; not in the target"))  # fmt: skip
    v = ratios(r)
    # Three places here, two on the RATIOS line: 0.498 must not read as a missed 0.50.
    targets = [
        ("pipeline ÷ HTTP ceiling ≥ 0.5", f"{v['http']:.3f}", _met(v["http"] >= 0.5)),
        ("pipeline@50ms ÷ pipeline@0ms ≥ 0.9", f"{v['latency']:.3f}", _met(v["latency"] >= 0.9)),
        ("p99 at half load ≤ 200 ms", f"{v['p99_ms']:.0f} ms", _met(v["p99_ms"] <= 200)),
        ("RSS@100k ÷ RSS@10k ≤ 1.2", f"{v['rss']:.3f}", _met(v["rss"] <= 1.2)),
        ("pipeline ÷ raw Kafka (no target)", f"{v['kafka']:.3f}", ""),
    ]
    if r.ledger:
        slowest = max(lookup.p99_ms for lookup in r.ledger.lookups)
        bound = all(lookup.index_bound for lookup in r.ledger.lookups)
        targets.append(("ledger lookups < 5 ms, index-bound", f"p99 ≤ {slowest:.2f} ms",
                        _met(slowest < 5 and bound)))  # fmt: skip
    rows.append(("", "", ""))
    rows += [(f"target: {name}", value, verdict) for name, value, verdict in targets]

    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    header = (f"invoice-sync bench — {r.stack} stack, {os.cpu_count()} CPUs, "
              f"{r.workers} worker process(es), BENCH_SCALE={r.scale:g}")  # fmt: skip
    lines = [header, "=" * len(header)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    lines += r.notes
    note = drift_note(r)
    if note is not None:
        lines.append(note)
    return "\n".join(lines)
