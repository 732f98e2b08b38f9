"""Batches cut where a fetch ends, not on a timer.

faust's ``take_events`` cuts a batch when it is full or when its timer fires, so at
any load short of a backlog every event also waited for the timer: ~half a batch
window on average, after the broker had already handed it over. Here the consumer
asks the broker for events at most once per batch window (``pace_fetches`` in
``streams.worker.transport``) and announces when it has handed a fetch's events to
the stream (:class:`FetchHandOver`); the batch is cut right then, or when it is
full. A batch is thus what one fetch brought, and an event waits for the next fetch
but not for a timer as well.

Fetching at most once per window also spares the broker: Tansu, the embedded
broker, answers a fetch at once when a partition has data and then lists every
record batch the partition holds, so a consumer that fetched as fast as answers
came (every ~15 ms at half load) made its CPU climb through a long run
(docs/performance.md, item 28).

The generator follows faust's own ``Stream.take_events`` (faust-streaming,
BSD licence) step for step, so acks, the read-ahead limit and the shutdown behave
as they do there; what differs is when the batch is cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from mode.utils.futures import notify


class FetchHandOver:
    """Whether the consumer has handed every event of its last fetch to the streams.

    The consumer calls :meth:`finished` when it goes back to the broker for more
    (it has delivered all it had) and :meth:`started` when a fetch brought events.
    """

    def __init__(self) -> None:
        self.complete = True
        self._listeners: list[Callable[[], None]] = []

    def started(self) -> None:
        self.complete = False

    def finished(self) -> None:
        self.complete = True
        for listener in self._listeners:
            listener()

    def listen(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` on every :meth:`finished`; returns the undo."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)


async def take_fetched(
    stream: Any, max_: int, within: float, handover: FetchHandOver
) -> AsyncIterator[list[Any]]:
    """Events of ``stream`` in batches: cut when the events of a fetch have all been
    taken, when ``max_`` are buffered, or ``within`` seconds after the last batch."""
    buffer: list[Any] = []
    events: list[Any] = []
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    queue = stream.channel.queue
    stream_enable_acks: bool = stream.enable_acks
    channel_it = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming
        if buffer_consuming is not None:
            try:
                await buffer_consuming
            finally:
                buffer_consuming = None
        buffer.append(value)
        events.append(stream.current_event)
        if len(buffer) >= max_:
            buffer_full.set()
            # No more than max_: the stream waits until this batch is taken.
            buffer_consumed.clear()
            await stream.wait(buffer_consumed)
        elif handover.complete and queue.empty():
            buffer_full.set()
        return value

    def on_handover() -> None:
        if buffer and queue.empty():
            buffer_full.set()

    stop_listening = handover.listen(on_handover)
    # Acks are ours: an event is acknowledged once its batch has been consumed.
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)
            if buffer:
                # The stream must not add to the buffer while the batch is read.
                buffer_consuming = stream.loop.create_future()
                try:
                    yield list(events)
                finally:
                    buffer.clear()
                    for event in events:
                        await stream.ack(event)
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        stop_listening()
        stream.enable_acks = stream_enable_acks
        stream._processors.remove(add_to_buffer)
