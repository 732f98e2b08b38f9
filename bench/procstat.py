"""What the kernel says about a process: CPU seconds, resident memory, and how its main
thread shared the cores."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    """``/proc/<pid>/stat`` from its third field (the state) on."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        # The command name may hold spaces; fields after it start past the last ')'.
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and every process below it, those that have
    exited and been waited for included (``cutime`` + ``cstime``): PostgreSQL's work
    is done in its postmaster's children. 0 once ``root`` is gone."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except (OSError, IndexError):  # gone between the listing and the read
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(value) for value in fields[11:15]) / _TICK
    tree = {root} if root in times else set()
    grew = True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    # A live process's own time is in no one's cutime; a waited-for one's is in its
    # parent's, once: so the sum counts each process of the tree once.
    return sum(times[pid] for pid in tree)


def busy_seconds() -> tuple[float, float]:
    """All cores' seconds not idle, and all cores' seconds, since boot (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy / _TICK, (busy + idle + iowait) / _TICK


def main_thread_schedstat(pid: int) -> tuple[float, float]:
    """Seconds the main thread of ``pid`` has run, and seconds it was ready to run but
    waited for a CPU (``/proc/<pid>/task/<pid>/schedstat``, in nanoseconds). A worker's
    main thread is its event loop; the second figure is how long the other processes on
    the same cores held it up. NaNs where the kernel keeps no schedstat."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat", encoding="ascii") as f:
            running, waiting = f.read().split()[:2]
    except (OSError, ValueError):
        return math.nan, math.nan
    return int(running) / 1e9, int(waiting) / 1e9


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) in kB from ``/proc/<pid>/status``."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(rest.split()[0])
    return found


class RssSampler:
    """Samples ``VmRSS`` every ``interval`` seconds; ``peak_kb`` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._sample()

    def _sample(self) -> None:
        with contextlib.suppress(OSError):
            self.peak_kb = max(self.peak_kb, memory_kb(self.pid).get("VmRSS", 0))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)
