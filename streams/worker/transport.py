"""faust's aiokafka transport with the consumer settings faust does not expose.

faust hard-codes ``fetch_max_wait_ms=1500``. A broker answers a long poll as soon as
data arrives, in theory; Tansu (the embedded broker) holds it for the full wait, so
every event waited up to 1.5 s before the worker even saw it (p99 issued→confirmed
was ~2 s at a tenth of capacity). On real Kafka a shorter wait only means a few more
empty fetches per second while idle.

faust also leaves ``fetch_max_bytes`` at aiokafka's 50 MB: one fetch on a deep
backlog then brought tens of megabytes into the worker at once, so its memory
grew with the backlog instead of staying a fixed multiple of the batch size.

And faust's monitor keeps per-event statistics (counts, timings, deques) that only
its web views read; ours are off, and our metrics are our own (Prometheus). The
bookkeeping cost ~15% of faust's own CPU per event (bench/faust_floor.py, A/B).
"""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from aiokafka import AIOKafkaConsumer
from faust.sensors.monitor import Monitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        app = self.app
        assert isinstance(app, WorkerApp)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = app.fetch_max_wait_ms
        consumer._fetch_max_bytes = app.fetch_max_bytes
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[Any] = _Consumer


class WorkerApp(faust.App):
    """A faust app whose consumer waits at most ``fetch_max_wait_ms`` per fetch and
    takes at most ``fetch_max_bytes`` from one fetch."""

    def __init__(
        self, *args: Any, fetch_max_wait_ms: int, fetch_max_bytes: int, **kwargs: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_max_bytes = fetch_max_bytes
        super().__init__(*args, monitor=_QuietMonitor(), **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


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
