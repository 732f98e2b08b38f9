"""faust's aiokafka transport with the consumer settings faust does not expose.

faust hard-codes ``fetch_max_wait_ms=1500``. A broker answers a long poll as soon as
data arrives; Tansu (the embedded broker) answers at once only if the partition had
data when the fetch came, and otherwise holds it for the full wait, so at a tenth of
capacity events waited up to 1.5 s before the worker even saw them (p99
issued→confirmed was ~2 s). On real Kafka a shorter wait only means a few more
empty fetches per second while idle.

faust also leaves ``fetch_max_bytes`` at aiokafka's 50 MB: one fetch on a deep
backlog then brought tens of megabytes into the worker at once, so its memory
grew with the backlog instead of staying a fixed multiple of the batch size.

And faust's monitor keeps per-event statistics (counts, timings, deques) that only
its web views read; ours are off, and our metrics are our own (Prometheus). The
bookkeeping cost ~15% of faust's own CPU per event (bench/faust_floor.py, A/B).

faust's consumer also fetches again the moment it has handed the last fetch over,
which on Tansu meant a fetch every ~15 ms at half load, each costing the broker more
the more record batches a partition held. ``pace_fetches`` holds fetches to one per
batch window per broker, and the consumer tells the streams when it has handed a
fetch over, so a batch is cut there (``streams.worker.batching``).

When the streams fall behind, faust stops fetching a partition whose stream buffer is
nearly full and fetches it again once the buffer has drained to under half. But with
every partition stopped it sleeps a whole second before it looks again, however soon a
buffer drains: on a deep backlog the worker then ran dry for ~0.4 s of every ~1.4 s,
with nothing in flight (docs/performance.md, item 30). Our consumer waits for the first
partition to come back instead.

Last, faust hands each fetched message to its stream through mode's ``wait_first``,
which makes four tasks per message (the hand-over, the flow-suspended, stopped and
crashed waits) and cancels three. The hand-over nearly always finishes without
waiting (the stream's buffer has room), so the consumer runs it at once and falls back
to ``wait_first`` only when it really waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Generator
from functools import cached_property
from inspect import iscoroutine
from typing import Any, ClassVar

import faust
from aiokafka import AIOKafkaConsumer
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT
from mode import Service
from mode.services import WaitResults

from streams.worker.batching import FetchHandOver


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        app = self.app
        assert isinstance(app, WorkerApp)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        consumer._fetch_max_bytes = app.fetch_max_bytes
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        app = self.app
        assert isinstance(app, WorkerApp)
        # The fetcher exists once the consumer has started; it plans each fetch by
        # calling this method, so pacing it paces every fetch.
        consumer = self._consumer
        assert consumer is not None
        pace_fetches(consumer._fetcher, app.fetch_interval)


def pace_fetches(
    fetcher: Any, interval: float, clock: Callable[[], float] = time.monotonic
) -> None:
    """Let aiokafka's ``fetcher`` send each broker a fetch at most once per
    ``interval`` seconds; until then it waits, as it does for any other backoff."""
    plan = fetcher._get_actions_per_node
    last_sent: dict[int, float] = {}

    def paced(assignment: Any) -> tuple[Any, ...]:
        requests, resets, timeout, invalid_metadata, resumes = plan(assignment)
        now = clock()
        due, wait = [], timeout
        for node_id, request in requests:
            early = last_sent.get(node_id, -interval) + interval - now
            if early > 0:
                wait = min(wait, early)
            else:
                last_sent[node_id] = now
                due.append((node_id, request))
        return due, resets, wait, invalid_metadata, resumes

    fetcher._get_actions_per_node = paced


class EagerWaitFirst(Service):
    """mode's ``wait_first``, but a first coroutine that finishes without waiting wins
    at once, with no task made for it or for the others."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        first = coros[0] if coros else None
        if (
            timeout is not None
            or not iscoroutine(first)
            or self._stopped.is_set()
            or self._crashed.is_set()
        ):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            step = first.send(None)
        except StopIteration as done:
            _close(coros[1:])
            return WaitResults([first], [done.value], False)
        except BaseException:
            _close(coros[1:])
            raise
        return await super().wait_first(_Resumed(first, step), *coros[1:])


class _Consumer(EagerWaitFirst, faust_aiokafka.Consumer):
    async def _wait_next_records(self, timeout: float) -> Any:
        # Called once per fetch, after the last one's events have all been handed over.
        app = self.app
        assert isinstance(app, WorkerApp)
        handover = app.fetch_handover
        handover.finished()
        if self.flow_active and not app.client_only and not self._get_active_partitions():
            # Every partition stopped for a full buffer: faust would sleep a second here.
            self._buffer_drained.clear()
            await self.wait_for_stopped(self._buffer_drained.wait(), timeout=timeout)
            resumed = self._get_active_partitions()
            if not resumed:
                return {}, resumed
        records, active = await super()._wait_next_records(timeout)
        if records:
            handover.started()
        return records, active

    @cached_property
    def _buffer_drained(self) -> asyncio.Event:
        return asyncio.Event()

    def on_buffer_drop(self, tp: Any) -> None:
        # The streams' buffer of ``tp`` has drained: faust fetches the partition again.
        super().on_buffer_drop(tp)
        self._buffer_drained.set()

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


def _close(coros: tuple[Any, ...]) -> None:
    # Never awaited now: closed, so Python does not warn that they were forgotten.
    for coro in coros:
        if iscoroutine(coro):
            coro.close()


class _Resumed:
    """The rest of a coroutine that has run up to its first wait (``step``, what it
    waits on), as an awaitable a task can drive like the coroutine itself."""

    def __init__(self, coro: Coroutine[Any, Any, Any], step: Any) -> None:
        self._coro = coro
        self._step = step

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self._coro, self._step
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - a cancellation, passed on to where it waits
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer


class WorkerApp(faust.App):
    """A faust app whose consumer waits at most ``fetch_max_wait_ms`` per fetch, takes
    at most ``fetch_max_bytes`` from one fetch, fetches at most once per
    ``fetch_interval`` seconds and reports each hand-over to ``fetch_handover``."""

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int,
        fetch_max_bytes: int,
        fetch_interval: float,
        **kwargs: Any,
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_max_bytes = fetch_max_bytes
        self.fetch_interval = fetch_interval
        self.fetch_handover = FetchHandOver()
        super().__init__(*args, monitor=_QuietMonitor(), **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        # faust's own looks conf.Event up for every message, through the settings'
        # __getattribute__, which records each access: ~0.8 % of the loop's samples.
        return self._event_type(self, key, value, headers, message)

    @cached_property
    def _event_type(self) -> Any:
        return self.conf.Event


class _QuietMonitor(Monitor):
    """faust's monitor without the per-event hooks; what the consumer reports per
    commit and per fetch (offsets, end offsets) it still keeps."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        pass

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass
