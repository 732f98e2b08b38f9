"""Reading the dead-letter topic: every record from the beginning to the high-water mark.

End offsets from ``ListOffsets`` are wrong on Tansu (``shared/notes/embedded-stack.md``),
so the reader never asks for them: it reads until its position on every partition
reaches the high-water mark that fetch responses carry (right on Tansu and Kafka),
and, should a partition never answer, stops after a quiet spell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from streams.kafka.clients import consumer as make_consumer
from streams.retry.deadletter import (
    H_FIELD,
    H_LAST_FAILURE,
    H_REASON,
    H_REASON_CODE,
)
from streams.settings import Settings

__all__ = [
    "DeadLetterRecord",
    "DlqFilter",
    "DlqSearch",
    "Position",
    "dead_letters_of",
    "parse_position",
    "read_dlq",
]

#: (partition, offset) of a record on the DLQ topic
Position = tuple[int, int]


def parse_position(text: str) -> Position:
    """``"PARTITION:OFFSET"`` → ``(partition, offset)``; ValueError when it is not one."""
    partition, sep, offset = text.strip().partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"expected PARTITION:OFFSET such as 0:42, got {text!r}")
    return int(partition), int(offset)


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    #: when the broker stored the dead letter
    timestamp: datetime
    key: bytes | None
    value: bytes
    #: every header, in order, decoded as UTF-8
    headers: tuple[tuple[str, str], ...]

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def reason_code(self) -> str:
        return self.header(H_REASON_CODE) or "UNKNOWN"

    @property
    def reason(self) -> str:
        return self.header(H_REASON) or ""

    @property
    def field(self) -> str | None:
        return self.header(H_FIELD)

    @property
    def invoice_key(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    @property
    def seller_tax_id(self) -> str | None:
        key = self.invoice_key
        return key.split(":", 1)[0] if key and ":" in key else None

    @property
    def invoice_number(self) -> str | None:
        key = self.invoice_key
        return key.split(":", 1)[1] if key and ":" in key else None

    @property
    def failed_at(self) -> datetime:
        """The last failure time from the headers, else the record's timestamp."""
        text = self.header(H_LAST_FAILURE)
        if text:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                pass
            else:
                if moment.tzinfo is not None:
                    return moment
        return self.timestamp

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(),
            "failed_at": self.failed_at.isoformat(),
            "key": self.invoice_key,
            "seller_tax_id": self.seller_tax_id,
            "invoice_number": self.invoice_number,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "field": self.field,
            "headers": dict(self.headers),
        }


@dataclass(frozen=True)
class DlqFilter:
    """Every given criterion must hold; times are compared with ``failed_at``."""

    reason: str | None = None
    seller: str | None = None
    invoice: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("since/until must be timezone-aware")

    @property
    def empty(self) -> bool:
        return not any((self.reason, self.seller, self.invoice, self.since, self.until))

    def describe(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (("reason", self.reason), ("seller", self.seller),
                                ("invoice", self.invoice), ("since", self.since),
                                ("until", self.until))
            if value is not None
        ]  # fmt: skip
        return ", ".join(parts) or "no filter"

    def matches(self, record: DeadLetterRecord) -> bool:
        if self.reason is not None and record.reason_code.upper() != self.reason.upper():
            return False
        if self.seller is not None and record.seller_tax_id != self.seller:
            return False
        if self.invoice is not None and record.invoice_number != self.invoice:
            return False
        failed_at = record.failed_at
        if self.since is not None and failed_at < self.since:
            return False
        return self.until is None or failed_at < self.until


def _record(message: Any) -> DeadLetterRecord:
    headers = tuple(
        (name, value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
        for name, value in (message.headers or ())
    )
    return DeadLetterRecord(
        partition=message.partition,
        offset=message.offset,
        timestamp=datetime.fromtimestamp(max(message.timestamp, 0) / 1000, UTC),
        key=message.key,
        value=message.value or b"",
        headers=headers,
    )


async def read_dlq(
    settings: Settings,
    dlq_filter: DlqFilter | None = None,
    *,
    positions: Sequence[Position] | None = None,
    quiet_seconds: float = 3.0,
    timeout: float = 120.0,
) -> list[DeadLetterRecord]:
    """The DLQ records that match, in (partition, offset) order.

    ``positions``: only these records (the partitions they are on are read from the
    lowest requested offset). A missing topic reads as empty.
    """
    scan = await _scan(settings, dlq_filter, positions, None, quiet_seconds, timeout)
    return scan.records


@dataclass(frozen=True)
class DlqSearch:
    """The dead letters of one invoice, from a scan of each DLQ partition's newest records."""

    records: list[DeadLetterRecord]
    #: records left unread, older than the newest ``tail`` of their partition
    unread: int

    @property
    def note(self) -> str | None:
        if not self.unread:
            return None
        return (f"the DLQ is large: only the newest records of each partition were searched "
                f"({self.unread} older ones were not); `invoice-sync dlq list --invoice N` "
                "reads them all")  # fmt: skip


#: records per DLQ partition that an invoice lookup reads, newest first
SEARCH_TAIL = 20_000


async def dead_letters_of(
    settings: Settings,
    invoice_number: str,
    seller_tax_id: str | None = None,
    *,
    tail: int = SEARCH_TAIL,
    timeout: float = 20.0,
) -> DlqSearch:
    """An invoice's dead letters, for ``invoice-sync status`` and the HTTP lookup: only
    the newest ``tail`` records of each partition are read, so a lookup stays quick
    however large the DLQ has grown."""
    wanted = DlqFilter(seller=seller_tax_id, invoice=invoice_number)
    scan = await _scan(settings, wanted, None, tail, 1.0, timeout)
    return DlqSearch(scan.records, scan.unread)


@dataclass(frozen=True)
class _Scan:
    records: list[DeadLetterRecord]
    unread: int


async def _scan(
    settings: Settings,
    dlq_filter: DlqFilter | None,
    positions: Sequence[Position] | None,
    tail: int | None,
    quiet_seconds: float,
    timeout: float,
) -> _Scan:
    wanted = set(positions) if positions is not None else None
    consumer = make_consumer(settings, group_id=None, client_id="invoice-sync-dlq")
    try:
        await consumer.start()
        topic = settings.dlq_topic
        if topic not in await consumer.topics():
            return _Scan([], 0)
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        start: Mapping[int, int] = {p: 0 for p in partitions}
        if wanted is not None:
            start = {p: min(o for q, o in wanted if q == p) for p in {q for q, _ in wanted}
                     if p in partitions}  # fmt: skip
        if not start:
            return _Scan([], 0)
        tps = [TopicPartition(topic, p) for p in sorted(start)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        last = {p: max(o for q, o in wanted if q == p) for p in start} if wanted else {}
        # With a tail, where each partition's reading starts once its high-water mark is
        # known (from the first fetch: ListOffsets is wrong on Tansu).
        cut: dict[int, int] = {}
        first: dict[int, int] = {}
        found: list[DeadLetterRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_since = loop.time()
        while loop.time() < deadline:
            batches = await consumer.getmany(*tps, timeout_ms=200)
            if any(batches.values()):
                quiet_since = loop.time()
            for tp, messages in batches.items():
                if tail is not None and tp.partition not in cut and messages:
                    # The log may start past 0 (retention): count from its first record.
                    first[tp.partition] = messages[0].offset
                    cut[tp.partition] = max(0, (consumer.highwater(tp) or 0) - tail)
                    if await consumer.position(tp) < cut[tp.partition]:
                        consumer.seek(tp, cut[tp.partition])
                for message in messages:
                    record = _record(message)
                    if wanted is not None and (record.partition, record.offset) not in wanted:
                        continue
                    if record.offset < cut.get(record.partition, 0):
                        continue
                    if dlq_filter is None or dlq_filter.matches(record):
                        found.append(record)
            if await _caught_up(consumer, tps, last):
                break
            if loop.time() - quiet_since >= quiet_seconds:
                break
        found.sort(key=lambda r: (r.partition, r.offset))
        return _Scan(found, sum(max(0, cut[p] - first[p]) for p in cut))
    finally:
        await consumer.stop()


async def _caught_up(consumer: Any, tps: list[TopicPartition], last: Mapping[int, int]) -> bool:
    """Every partition read up to its high-water mark (or past the last wanted offset)."""
    for tp in tps:
        position = await consumer.position(tp)
        if tp.partition in last and position > last[tp.partition]:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None or position < highwater:
            return False
    return True
