"""Our partitioner must put every key where Kafka's default partitioner puts it:
consumers of the output topics rely on one invoice's events sharing a partition
with what other clients publish under the same key."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams.kafka.partitioner import KeyPartitioner, murmur2


def test_hashes_every_key_length_as_kafka_does() -> None:
    rng = random.Random(7)
    for length in range(0, 80):
        for _ in range(50):
            key = rng.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF, key


def test_matches_the_java_clients_known_hashes() -> None:
    # Values from Kafka's UtilsTest.testMurmur2 (signed ints in Java).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, java in cases.items():
        assert murmur2(key) == java & 0xFFFFFFFF, key


def test_picks_the_partition_the_default_partitioner_picks() -> None:
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for partitions in (1, 3, 4, 12):
        every = list(range(partitions))
        for n in range(2000):
            key = f"91110108MA01ABCD0B:2611200000{n:010d}".encode()
            assert ours(key, every, every) == theirs(key, every, every)


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2, 3], [2]) == 2
    assert KeyPartitioner()(None, [0, 1], []) in (0, 1)
