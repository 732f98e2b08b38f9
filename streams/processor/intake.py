"""Overlapping batches: the next batch is decoded and claimed while earlier ones wait
on the platform, so platform latency is hidden instead of paid once per batch.

A batch's records are acknowledged (``on_done``) only once the batch is fully
processed, and batches are acknowledged in the order they were admitted: a batch that
finishes early waits for the ones before it. faust commits only up to the first
unacknowledged record, except on a partition that has no committed offset yet, where
it commits the first run of acknowledged offsets whatever lies before it: a later
batch acknowledged first would have its offsets committed over an earlier batch still
in flight, and a crash then would lose that batch (the fault suite's crash after the
ledger write caught it). In order, overlapping changes nothing about what a crash can
lose. A batch waits for the ones before it at most as long as their slowest invoice,
which the deliverer parks after ``park_after``. Order per
invoice is kept by never running two batches that share a Kafka key at once; at
most ``depth`` batches are in flight, which bounds memory however deep the backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from streams.processor.records import RawRecord

log = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("finished", "on_done")

    def __init__(self, on_done: Callable[[], None]) -> None:
        self.on_done = on_done
        self.finished = False


class Intake:
    def __init__(
        self,
        process: Callable[[Sequence[RawRecord]], Awaitable[None]],
        *,
        depth: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._process = process
        self._slots = asyncio.Semaphore(depth)
        self._holder: dict[bytes, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Admitted batches not yet acknowledged, oldest first.
        self._unacked: deque[_Pending] = deque()
        self._sleep = sleep

    async def admit(self, records: Sequence[RawRecord], on_done: Callable[[], None]) -> None:
        """Return once the batch has started; ``on_done`` runs when it has finished."""
        await self._slots.acquire()
        try:
            earlier = {t for r in records if r.key is not None and (t := self._holder.get(r.key))}
            if earlier:
                await asyncio.wait(earlier)
        except BaseException:
            self._slots.release()
            raise
        pending = _Pending(on_done)
        self._unacked.append(pending)
        task = asyncio.create_task(self._run(records, pending))
        self._tasks.add(task)
        for record in records:
            if record.key is not None:
                self._holder[record.key] = task

    async def _run(self, records: Sequence[RawRecord], pending: _Pending) -> None:
        try:
            await self._to_completion(records)
            pending.finished = True
            while self._unacked and self._unacked[0].finished:
                self._unacked.popleft().on_done()
        finally:
            me = asyncio.current_task()
            for record in records:
                if record.key is not None and self._holder.get(record.key) is me:
                    del self._holder[record.key]
            self._tasks.discard(me)
            self._slots.release()

    async def _to_completion(self, records: Sequence[RawRecord]) -> None:
        # An unexpected error must not ack records never handled, nor stall the
        # partition's commits for good: retry the batch, which the ledger and the
        # platform's duplicate check make safe.
        delay = 1.0
        while True:
            try:
                await self._process(records)
            except Exception:
                log.exception("batch of %d records failed unexpectedly; retrying it", len(records))
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)
            else:
                return

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """On shutdown: let batches in flight finish; what does not finish in time is
        cancelled unacknowledged, so it is read again after the restart."""
        if not self._tasks:
            return
        log.info("stopping: finishing %d batches in flight", len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
