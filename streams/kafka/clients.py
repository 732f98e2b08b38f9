"""aiokafka clients configured from the settings, one place for every option."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka.partitioner import KeyPartitioner
from streams.kafka.security import aiokafka_options
from streams.settings import Settings


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        **aiokafka_options(settings),
        "bootstrap_servers": settings.kafka_bootstrap,
        # acks=all: an output event counts as sent only once the in-sync replicas have it.
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent,
        "linger_ms": 5,
        # A wave's output events for one partition fit one record batch. At aiokafka's
        # 16 KB a wave of ~400 confirmations went as ~11 batches, and the accumulator
        # holds one batch per partition, so each waited for the broker to take the one
        # before it: ~11 produce requests in a row per wave instead of one.
        "max_batch_size": settings.kafka_max_batch_bytes,
        "max_request_size": max(settings.max_message_bytes * 2, 1_048_576),
        "partitioner": KeyPartitioner(),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        **aiokafka_options(settings),
        "bootstrap_servers": settings.kafka_bootstrap,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
