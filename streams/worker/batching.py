"""Each fetch handed to the agent whole, as one batch, instead of message by message.

faust hands every fetched message to its stream on its own: through the consumer's
drain loop, the conductor, the stream's buffer and its iterator, and back through
the same layers with an ack per event. On a backlog that was ~16 % of the event
loop's time for an invoice (py-spy ``--gil``, docs/performance.md, item 36). The
consumer (``streams.worker.transport``) puts each fetch's records of the issued
topic here as one list, and the agent takes each as a batch: a batch is what one
fetch brought, so an event waits for the next fetch (at most one per batch window,
``pace_fetches``) but never for a timer as well.

The queue holds at most ``read_ahead`` fetches, a few batches' worth of records (a
fetch brings at most ``broker_max_poll_records``, the batch size): when it is full
the consumer's drain loop waits, so memory stays a fixed multiple of the batch size
however deep the backlog. Like faust's own stream buffers it is managed by the app's
flow control: a rebalance suspends it and clears it, and the records dropped were
never acknowledged, so never committed, and are fetched again from the committed
offsets by whichever worker owns their partitions then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from mode.utils.queues import FlowControlEvent, FlowControlQueue


class Fetched:
    """Fetches on their way from the consumer to the agent, one list of messages each."""

    def __init__(self, flow_control: FlowControlEvent, read_ahead: int) -> None:
        self._queue: FlowControlQueue[list[Any]] = FlowControlQueue(
            maxsize=read_ahead, flow_control=flow_control, clear_on_resume=True
        )

    async def put(self, messages: list[Any]) -> None:
        """Waits while the flow is suspended (a rebalance) or ``read_ahead`` fetches wait."""
        await self._queue.put(messages)

    def waiting(self) -> int:
        """Fetches put and not yet taken."""
        return self._queue.qsize()

    async def batches(self, max_: int) -> AsyncIterator[list[Any]]:
        """Each fetch as a batch, cut into pieces of ``max_`` should one be larger."""
        while True:
            messages = await self._queue.get()
            for start in range(0, len(messages), max_):
                yield messages[start : start + max_]
