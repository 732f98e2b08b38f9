"""The faust app: one agent reading ``invoices.issued`` in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import faust

from streams.kafka.security import faust_credentials
from streams.processor.records import RawRecord
from streams.settings import Settings
from streams.worker.runtime import Runtime
from streams.worker.transport import WorkerApp

log = logging.getLogger(__name__)


def build_app(settings: Settings, runtime: Runtime) -> faust.App:
    app = WorkerApp(
        settings.consumer_group,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        # A record larger than this still comes whole (Kafka returns at least one batch).
        fetch_max_bytes=2 * settings.max_message_bytes,
        fetch_interval=settings.batch_window,
        bulk_topic=settings.issued_topic,
        # Read ahead a few fetches, not the whole backlog: memory stays a fixed multiple
        # of the batch size however deep the backlog (RSS target in bench/). A fetch
        # brings at most one batch (broker_max_poll_records); with one fetch waiting,
        # the loop ran dry while the next came back (docs/performance.md, item 34).
        read_ahead=settings.read_ahead_batches,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        # Values stay raw bytes: we decode once with orjson, and dead letters need the
        # original bytes untouched.
        key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=max(settings.kafka_session_timeout / 10, 0.5),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=settings.max_message_bytes,
        broker_max_poll_records=settings.batch_size,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        # On shutdown, finish the batches in hand but not the read-ahead: what was not
        # processed is not committed, and is read again after the restart.
        stream_wait_empty=False,
        web_enabled=False,
        broker_credentials=faust_credentials(settings),
        datadir=str(settings.data_dir / "faust"),
        store="memory://",
        # We use no leader-only timers, and the leader topic faust would create has no
        # prefix: on a cluster where we may not create topics it would stop the worker.
        topic_disable_leader=True,
    )
    issued = app.topic(settings.issued_topic, key_type=bytes, value_type=bytes)

    # Shown on /readyz: a worker may be up but not consuming yet (group join) or at all
    # (more workers than partitions).
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        mine = [tp for tp in args[0] if tp.topic == settings.issued_topic]
        runtime.health.assigned_partitions = len(mine)
        runtime.metrics.assigned_partitions([tp.partition for tp in mine])
        log.info("consuming %d partitions of %s", len(mine), settings.issued_topic)

    app.on_partitions_assigned.connect(on_assigned)

    async def report_lag() -> None:
        # The high-water mark from fetch responses, not ListOffsets: right on Tansu too.
        # Measured from the committed offset, not the fetch position, so read-ahead and
        # batches still in flight count as lag until they are really done.
        committed: dict[Any, int | None] = getattr(app.consumer, "_committed_offset", {})
        for tp in app.consumer.assignment():
            if tp.topic != settings.issued_topic:
                continue
            highwater = app.consumer.highwater(tp)
            done = committed.get(tp)
            if done is None:
                done = await app.consumer.position(tp)
            if highwater is not None and highwater >= 0 and done is not None:
                runtime.metrics.consumer_lag(tp.partition, max(0, highwater - done))

    app.timer(interval=15.0)(report_lag)

    @app.agent(issued)
    async def process(stream: Any) -> None:
        await runtime.ready.wait()
        intake = runtime.intake
        assert intake is not None
        # Iterating the topic subscribes the consumer to it (faust's Topic.__aiter__);
        # its records then come a fetch at a time through app.fetched, not the stream.
        aiter(stream.channel)
        ack = app.consumer.ack
        async for messages in app.fetched.batches(settings.batch_size):
            # Positional: a named tuple built from keywords costs twice as much, per record.
            records = [
                RawRecord(m.topic, m.partition, m.offset, m.key, m.value, _headers(m.headers))
                for m in messages
            ]
            await intake.admit(records, partial(_ack, ack, messages))

    return app


def _ack(ack: Callable[[Any], bool], messages: list[Any]) -> None:
    # What acking faust's event for each message ends in: the offset may be committed.
    for message in messages:
        ack(message)


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()  # most records have none
    # faust hands headers over as a list of pairs or as a mapping, depending on the path.
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(k), bytes(v)) for k, v in pairs)
