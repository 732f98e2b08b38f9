"""Event ids and nonces: unique, well-formed UUID4s, also across a fork."""

from __future__ import annotations

import os
import uuid

from streams.randomids import random_token, random_uuid


def test_ids_are_uuid4_strings_and_unique_across_pool_refills() -> None:
    ids = [random_uuid() for _ in range(2_000)]  # several 256-id pools
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_forked_child_does_not_repeat_the_parents_next_id() -> None:
    random_uuid()  # the parent now holds a partly used pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave at once
        os.write(write, random_uuid().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != random_uuid()


def test_tokens_are_128_random_bits_in_hex_and_unique() -> None:
    tokens = [random_token() for _ in range(2_000)]
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 32 and int(t, 16) >= 0 and t == t.lower() for t in tokens)
