"""Output events as the worker publishes them: every message acknowledged, on the
partition Kafka's default partitioner gives its key, in order per key."""

from __future__ import annotations

import time
import uuid

from streams.kafka.clients import producer as make_producer
from streams.kafka.partitioner import KeyPartitioner
from streams.kafka.sink import ProducerSink
from streams.kafka.topics import ensure_topics
from streams.processor.ports import OutMessage
from streams.settings import Settings

from .conftest import Services, read_topic


async def test_published_messages_all_arrive_on_their_keys_partitions_in_order(
    services: Services,
) -> None:
    # Three events per key and ~600 bytes each, ~54 KB a partition: with 16 KB batches
    # more than one record batch per partition, so a full batch is sent mid-way and a
    # fresh one takes over.
    settings = Settings(kafka_bootstrap=services.bootstrap, kafka_max_batch_bytes=16_384)
    topic = f"sink-{uuid.uuid4().hex[:8]}"
    await ensure_topics(services.bootstrap, [topic], partitions=4, replication=1)
    keys = [f"91110108MA01ABCD0B:{n:020d}".encode() for n in range(120)]
    messages = [
        OutMessage(topic, key, f"{key.decode()}#{step}:".encode() + b"x" * 560,
                   [("step", str(step).encode())])
        for step in range(3)
        for key in keys
    ] + [OutMessage(topic, None, b"no key")]  # fmt: skip
    producer = make_producer(settings)
    await producer.start()
    began = time.time()
    try:
        await ProducerSink(producer).publish(messages)
    finally:
        await producer.stop()

    records = await read_topic(settings, topic)
    assert sorted(r.value for r in records) == sorted(m.value for m in messages)
    every = [0, 1, 2, 3]
    for record in records:
        if record.key is not None:
            assert record.partition == KeyPartitioner()(record.key, every, every)
            assert dict(record.headers)["step"] == record.value.split(b"#")[1][:1]
        assert record.timestamp / 1000 >= began - 1
    for key in keys:
        steps = [r.value.split(b"#")[1][:1] for r in records if r.key == key]
        assert steps == [b"0", b"1", b"2"]
