"""The billing system's producer in the half-load phase, at the least CPU it can cost.

The bench process also hosts the sandbox, and at half load every core's time the load
generator takes is time the pipeline waits for. aiokafka's ``send`` per invoice drives
its accumulator and sender per record, and sends whichever partitions' batches have
lingered 5 ms as they come due: 127-157 produce requests a second at 2,000 invoices/s,
and 54-76 µs of this process's CPU an invoice plus 29-39 µs of Tansu's, alone against
Tansu (docs/performance.md, item 44).

What the broker and the worker see stays the same: one record batch per partition at a
time, sent once its first record has waited ``linger`` (Kafka's producer default, 5 ms)
and the batches before it are acknowledged, 89-92 batches a partition a second at
2,000/s against aiokafka's 85-88. But every partition's batch goes at once, in one
produce request, filled by the output port the worker publishes its own events through:
36-54 µs an invoice here and 21-29 in Tansu. Together ~0.03 ms an invoice, ~4 % of
what the whole machine spends on one at half load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streams.processor.ports import OutMessage, OutputPort

#: Kafka's own producer default since 4.0 (KIP-1030)
LINGER = 0.005


class SteadyPublisher:
    """``add`` hands a record over; ``send_due`` sends what has waited ``linger`` once
    what went before is acknowledged; ``close`` sends the rest and waits for every
    acknowledgement. A send that failed raises its error from the next ``send_due`` or
    ``close``."""

    def __init__(
        self,
        output: OutputPort,
        topic: str,
        *,
        linger: float = LINGER,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._output = output
        self._topic = topic
        self._linger = linger
        self._clock = clock or asyncio.get_running_loop().time
        self._open: list[OutMessage] = []
        self._opened_at = 0.0
        self._in_flight: asyncio.Task[None] | None = None

    def add(self, key: bytes, value: bytes) -> None:
        if not self._open:
            self._opened_at = self._clock()
        self._open.append(OutMessage(self._topic, key, value))

    async def send_due(self) -> None:
        in_flight = self._in_flight
        if in_flight is not None:
            if not in_flight.done():
                return
            self._in_flight = None
            in_flight.result()
        if self._open and self._clock() - self._opened_at >= self._linger:
            self._in_flight = asyncio.create_task(self._output.publish(self._open))
            self._open = []

    async def close(self) -> None:
        if self._in_flight is not None:
            await self._in_flight
            self._in_flight = None
        if self._open:
            await self._output.publish(self._open)
            self._open = []
