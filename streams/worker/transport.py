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
batch window per broker.

Last, faust hands each fetched message to its stream on its own, through the
conductor, the stream's buffer and iterator, and an ack per event back: ~16 % of the
event loop's time for an invoice on a backlog. Our consumer puts each fetch's records
of the issued topic into ``app.fetched`` as one list, which the agent takes as a
batch (``streams.worker.batching``); records of any other topic still go faust's way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar

import faust
from aiokafka import AIOKafkaConsumer
from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

from streams.worker.batching import Fetched


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


class _Consumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:
        """faust's drain loop (``Consumer._drain_messages``, faust-streaming 0.15.3, BSD
        licence) step for step (read offsets, gaps, commits every N acks, the stop
        and suspend checks), except that the records of one fetch from the issued topic
        go to ``app.fetched`` as one list instead of to the conductor one by one."""
        app = self.app
        assert isinstance(app, WorkerApp)
        fetched = app.fetched
        bulk_topic = app.bulk_topic
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = app.topics.acks_enabled_for
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                # As faust: getmany may return at once, and the loop must let others run.
                await self.sleep(0)
                if not self.should_stop:
                    messages: list[Any] = []
                    async for tp, message in ait:
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is not None and offset < r_offset:
                            continue  # read already: faust drops it too
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if message.topic == bulk_topic:
                            messages.append(message)
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                    if messages:
                        # A rebalance abandons the hand-over, as faust abandons a message's.
                        await self.wait_first(fetched.put(messages), self.suspend_flow.wait())
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception:
            self.log.exception("Drain messages raised")
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer


class WorkerApp(faust.App):
    """A faust app whose consumer waits at most ``fetch_max_wait_ms`` per fetch, takes
    at most ``fetch_max_bytes`` from one fetch, fetches at most once per
    ``fetch_interval`` seconds, and hands the records of ``bulk_topic`` to ``fetched``
    a fetch at a time, holding at most ``read_ahead`` fetches there."""

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int,
        fetch_max_bytes: int,
        fetch_interval: float,
        bulk_topic: str,
        read_ahead: int,
        **kwargs: Any,
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_max_bytes = fetch_max_bytes
        self.fetch_interval = fetch_interval
        self.bulk_topic = bulk_topic
        self.read_ahead = read_ahead
        super().__init__(*args, monitor=_QuietMonitor(), **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)

    @cached_property
    def fetched(self) -> Fetched:
        return Fetched(self.flow_control, self.read_ahead)


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
