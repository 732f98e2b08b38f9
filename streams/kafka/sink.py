"""Publishing output events through aiokafka, waiting for every acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from streams.processor.ports import OutMessage


class ProducerSink:
    """``OutputPort`` over an aiokafka producer: send all, then await all acks, so a
    batch's offsets are committed only after its results are durable on the broker.

    Our own producer rather than faust's, because faust offers no idempotent
    producer outside its transactional mode, and we want it wherever the broker
    has one (``INVOICE_SYNC_KAFKA_IDEMPOTENT``).
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        pending = [
            await self._producer.send(m.topic, m.value, key=m.key, headers=m.headers or None)
            for m in messages
        ]
        await asyncio.gather(*pending)
