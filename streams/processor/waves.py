"""Cutting a batch into waves: wave i holds the i-th record of every Kafka key, so one
invoice's events go in order while different invoices go concurrently."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from streams.processor.records import RawRecord


def waves(records: Sequence[RawRecord]) -> list[list[RawRecord]]:
    by_key: dict[bytes | None, list[RawRecord]] = defaultdict(list)
    out: list[list[RawRecord]] = []
    for record in records:
        # Keyless records carry no order to keep: each stands alone in the first wave.
        position = 0 if record.key is None else len(by_key[record.key])
        if record.key is not None:
            by_key[record.key].append(record)
        if position == len(out):
            out.append([])
        out[position].append(record)
    return out
