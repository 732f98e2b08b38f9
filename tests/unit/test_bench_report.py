"""The bench's table says when the machine, not the pipeline, moved between its phases,
and where the whole machine's CPU went."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.ceilings import Ceiling
from bench.pipeline import RunResult, SteadyResult, tail_spread
from bench.procstat import busy_seconds, tree_cpu_seconds
from bench.report import Results, drift_note, render


def _results(before: float, after: float) -> Results:
    results = Results(scale=1.0, stack="embedded")
    results.http_sides = [before, after]
    return results


def test_a_run_whose_ceiling_loops_differ_threefold_carries_the_note() -> None:
    table = render(_results(13_466, 3_923))
    assert "NOTE: this machine changed speed during the run" in table
    assert "13,466 req/s before the backlog runs and 3,923 after" in table


def test_a_run_that_slowed_or_sped_up_by_half_is_flagged_either_way() -> None:
    assert drift_note(_results(6_000, 9_000)) is not None
    assert drift_note(_results(9_000, 6_000)) is not None


def test_ordinary_drift_and_runs_without_both_sides_carry_no_note() -> None:
    assert drift_note(_results(9_120, 9_936)) is None
    assert "NOTE" not in render(Results(scale=1.0, stack="embedded"))


def test_a_backlog_run_shows_where_the_whole_machines_cpu_went() -> None:
    results = Results(scale=1.0, stack="embedded")
    results.at_0ms = RunResult(
        label="0ms", platform_latency_ms=0, invoices=100_000, confirmed=100_000, failed=0,
        seconds=20.0, cpu_ms_per_invoice=0.15, p50_ms=1.0, p99_ms=2.0, peak_rss_mb=190,
        loop_running=0.6, loop_waiting=0.3, busy=0.96,
        machine_ms=(("worker", 0.15), ("bench process (sandbox)", 0.09),
                    ("PostgreSQL", 0.06), ("Tansu", 0.01)),
    )  # fmt: skip
    row = next(line for line in render(results).splitlines() if "whole machine" in line)
    assert "0.31 ms" in row
    assert "worker 0.15, bench process (sandbox) 0.09, PostgreSQL 0.06, Tansu 0.01" in row
    assert "cores 96% busy" in row


def test_the_cpu_of_a_process_tree_counts_its_children_once(tmp_path: Path) -> None:
    before = tree_cpu_seconds(os.getpid())
    # A child that burns CPU and exits: once waited for, its time is in our cutime. /proc
    # counts in ticks (10 ms), so 0.2 s burnt can read a tick or two short.
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    subprocess.run([sys.executable, "-c", code], check=True)
    grown = tree_cpu_seconds(os.getpid()) - before
    assert 0.15 <= grown < 1.0
    assert tree_cpu_seconds(2**22 + 7) == 0
    busy, total = busy_seconds()
    assert 0 < busy <= total


def test_the_http_ceiling_shows_what_the_sandbox_spent_beside_the_client() -> None:
    results = Results(scale=1.0, stack="embedded")
    results.http = Ceiling("aiohttp", 49_999, 5.0, 0.07, 0.09)
    results.http_runs = [(768, 9_999.8)]
    row = next(line for line in render(results).splitlines() if "raw aiohttp" in line)
    assert "client 0.07 ms CPU each, sandbox 0.09; highest of 10,000 (conc. 768)" in row


def test_the_half_load_phase_shows_the_machines_cpu_too() -> None:
    results = Results(scale=1.0, stack="embedded")
    results.steady = SteadyResult(
        offered_rate=1_600, seconds=30, invoices=48_000, confirmed=48_000, measured=44_000,
        p50_ms=110, p99_ms=220, max_ms=300, cpu_ms_per_invoice=0.36, busy=0.7,
        machine_ms=(("worker", 0.36), ("bench process (sandbox)", 0.25), ("PostgreSQL", 0.09)),
    )  # fmt: skip
    lines = render(results).splitlines()
    steady = next(i for i, line in enumerate(lines) if line.startswith("steady load"))
    assert "whole machine's CPU per invoice" in lines[steady + 1]
    assert "0.70 ms" in lines[steady + 1]
    assert "cores 70% busy" in lines[steady + 1]


def test_a_stall_shows_as_the_slowest_invoices_bunched_in_one_second() -> None:
    steady = [(t / 100, 80.0) for t in range(3_000)]  # 30 s at 100/s, 80 ms each
    stall = [(12.0 + t / 100, 400.0) for t in range(40)]
    spread = tail_spread(steady + stall, threshold_ms=400)
    assert (spread.seconds_with_slow, spread.seconds) == (1, 30)
    assert (spread.busiest_share, spread.busiest_at) == (1.0, 12)
    busy = [(t / 100, 300.0 if t % 100 == 0 else 80.0) for t in range(3_000)]
    assert tail_spread(busy, threshold_ms=300).seconds_with_slow == 30


def test_the_half_load_row_says_when_its_slowest_invoices_were_issued() -> None:
    results = Results(scale=1.0, stack="embedded")
    results.steady = SteadyResult(
        offered_rate=1_600, seconds=30, invoices=48_000, confirmed=48_000, measured=44_000,
        p50_ms=110, p99_ms=220, max_ms=300, cpu_ms_per_invoice=0.36,
        tail=tail_spread([(12.2, 300.0), (12.7, 250.0), (20.5, 230.0), (29.9, 90.0)], 220),
    )  # fmt: skip
    [row] = [line for line in render(results).splitlines() if "slowest 1 %" in line]
    assert "in 2 of 30 s" in row
    assert "67% of them in one second (12 s in)" in row
