"""Publishing output events through aiokafka, waiting for every acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.kafka.partitioner import KeyPartitioner
from streams.processor.ports import OutMessage


class ProducerSink:
    """``OutputPort`` over an aiokafka producer: send all, then await all acks, so a
    batch's offsets are committed only after its results are durable on the broker.

    Keyed messages go out as record batches we fill ourselves, one acknowledgement
    each, partitioned as the producer's own ``KeyPartitioner`` would. ``send`` per
    message made a coroutine, a future and a completion for each invoice, ~3 % of
    the worker's event loop on a backlog. A message without a key goes through
    ``send``, whose partitioner chooses among the partitions that have a leader.

    Our own producer rather than faust's, because faust offers no idempotent
    producer outside its transactional mode, and we want it wherever the broker
    has one (``INVOICE_SYNC_KAFKA_IDEMPOTENT``).
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partition = KeyPartitioner()

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        pending: list[asyncio.Future[Any]] = []
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], Any] = {}
        for m in messages:
            if m.key is None:
                pending.append(await self._send(m))
                continue
            every = partitions.get(m.topic)
            if every is None:
                every = partitions[m.topic] = sorted(await self._producer.partitions_for(m.topic))
            place = (m.topic, self._partition(m.key, every, every))
            batch = batches.get(place)
            if batch is None:
                batch = batches[place] = self._producer.create_batch()
            if not self._append(batch, m):
                # Full: it goes now, and a fresh one takes this message (an empty batch
                # takes any message; one over the broker's limit fails at its ack).
                pending.append(await self._send_batch(place, batch))
                batch = batches[place] = self._producer.create_batch()
                self._append(batch, m)
        for place, batch in batches.items():
            if batch.record_count():
                pending.append(await self._send_batch(place, batch))
        await asyncio.gather(*pending)

    async def _send_batch(self, place: tuple[str, int], batch: Any) -> asyncio.Future[Any]:
        topic, partition = place
        future: asyncio.Future[Any] = await self._producer.send_batch(
            batch, topic, partition=partition
        )
        return future

    async def _send(self, m: OutMessage) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.send(
            m.topic, m.value, key=m.key, headers=m.headers or None
        )
        return future

    @staticmethod
    def _append(batch: Any, m: OutMessage) -> bool:
        # No timestamp: the batch stamps each record with the time it was added, as send does.
        return batch.append(timestamp=None, key=m.key, value=m.value, headers=m.headers) is not None
