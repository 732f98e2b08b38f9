"""The producer's record batches hold a whole wave of output events for one partition.

A wave's confirmations all go to one partition (its records came from one, and the
output topics have as many). When they needed ~11 record batches, each one waited
for the broker to take the batch before it: ~11 produce requests in a row per wave.
"""

from __future__ import annotations

from datetime import UTC, datetime

from streams.events.outputs import confirmed_event, encode
from streams.kafka.clients import producer as make_producer
from streams.settings import Settings


def _confirmation(n: int) -> tuple[bytes, bytes]:
    number = f"{n:020d}"
    value = encode(confirmed_event(
        invoice_number=number, seller_tax_id="91110108MA01ABCD0B",
        platform_ref=f"TP-{n:024d}", accepted_at=datetime.now(UTC),
        source_event_id="0b6f4c1e-8a8e-4d47-9d0c-6c3f3f7c2a11", attempts=1,
    ))  # fmt: skip
    return f"91110108MA01ABCD0B:{number}".encode(), value


async def _fits(settings: Settings, count: int) -> int:
    producer = make_producer(settings)
    try:
        batch = producer.create_batch()
        fitted = 0
        for n in range(count):
            key, value = _confirmation(n)
            if batch.append(timestamp=None, key=key, value=value, headers=[]) is None:
                break
            fitted += 1
        return fitted
    finally:
        await producer.stop()


async def test_a_full_batch_of_confirmations_fits_one_record_batch() -> None:
    settings = Settings()
    assert await _fits(settings, settings.batch_size) == settings.batch_size


async def test_the_record_batch_limit_is_a_setting() -> None:
    # Kept under a cluster's max.message.bytes, which refuses a larger batch whole.
    small = Settings(kafka_max_batch_bytes=16_384)
    assert 10 < await _fits(small, small.batch_size) < small.batch_size
