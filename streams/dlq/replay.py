"""Re-publishing dead letters to ``invoices.issued``, each replay recorded in the ledger.

A replay sends the original key and value byte for byte (or a corrected event for
one record), with header ``replayed_from_dlq_offset`` = ``"partition:offset"``.
Replaying twice never uploads twice: the worker answers an identical re-send of a
confirmed invoice from the ledger, and the platform's 409 echo covers one in flight.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka.errors import KafkaError

from streams.client.publisher import (
    InvoicePublisher,
    PublishedEvent,
    build_event,
    event_key,
    validate_issued,
)
from streams.dlq.reader import DeadLetterRecord, DlqFilter, Position, read_dlq
from streams.errors import InvoiceSyncError, LedgerError, SchemaViolationError
from streams.ledger.store import Ledger
from streams.retry.deadletter import H_REPLAYED_FROM
from streams.security.audit import audited
from streams.settings import Settings
from streams.validation.rules import DomainRules

__all__ = [
    "Replay",
    "ReplayEntry",
    "ReplayLog",
    "corrected_payload",
    "replay_and_audit",
    "replay_records",
    "replayed_header",
    "select_records",
]

#: the CLI's source for events it wraps around a corrected invoice
REPLAY_SOURCE = "invoice-sync-dlq-replay"


def who() -> str:
    """The OS user running the replay."""
    return getpass.getuser()


def replayed_header(record: DeadLetterRecord) -> tuple[str, bytes]:
    return (H_REPLAYED_FROM, record.position.encode())


@dataclass(frozen=True)
class Replay:
    """One replayed record and how its publication ended."""

    record: DeadLetterRecord
    key: str | None
    corrected: bool
    published: PublishedEvent | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.published is not None


@dataclass(frozen=True)
class ReplayEntry:
    at: datetime
    who: str
    dlq_partition: int
    dlq_offset: int
    invoice_key: str | None
    corrected: bool
    result: str
    detail: str | None


class ReplayLog:
    """The append-only ``dlq_replays`` table (migration 0002)."""

    def __init__(self, ledger: Ledger, dlq_topic: str) -> None:
        self._ledger = ledger
        self._topic = dlq_topic

    async def record(self, replay: Replay, *, by: str) -> None:
        result: str
        detail: str | None
        if replay.published is not None:
            p = replay.published
            result, detail = "published", f"{p.topic} {p.partition}:{p.offset}"
        else:
            result, detail = "failed", replay.error
        try:
            async with self._ledger.connection() as conn:
                await conn.execute(
                    "INSERT INTO dlq_replays (who, dlq_topic, dlq_partition, dlq_offset, "
                    "invoice_key, corrected, result, detail) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                    by, self._topic, replay.record.partition, replay.record.offset,
                    replay.key, replay.corrected, result, detail,
                )  # fmt: skip
        except asyncpg.UndefinedTableError as exc:
            raise _no_table(exc) from exc

    async def entries(self, positions: Sequence[Position] | None = None) -> list[ReplayEntry]:
        """Replays of this DLQ topic (of ``positions`` only, if given), oldest first."""
        parts = [p for p, _ in positions] if positions is not None else None
        offsets = [o for _, o in positions] if positions is not None else None
        try:
            async with self._ledger.connection() as conn:
                rows = await conn.fetch(
                    """SELECT r.* FROM dlq_replays r
                       WHERE r.dlq_topic = $1
                         AND ($2::int[] IS NULL OR (r.dlq_partition, r.dlq_offset) IN (
                              SELECT * FROM unnest($2::int[], $3::bigint[])))
                       ORDER BY r.id""",
                    self._topic, parts, offsets,
                )  # fmt: skip
        except asyncpg.UndefinedTableError as exc:
            raise _no_table(exc) from exc
        return [
            ReplayEntry(r["at"], r["who"], r["dlq_partition"], r["dlq_offset"],
                        r["invoice_key"], r["corrected"], r["result"], r["detail"])
            for r in rows
        ]  # fmt: skip


def _no_table(exc: Exception) -> LedgerError:
    return LedgerError(f"the ledger has no dlq_replays table ({exc}); run `invoice-sync migrate`")


def corrected_payload(payload: bytes, rules: DomainRules, *, today: date) -> tuple[bytes, bytes]:
    """(key, value) for a corrected copy: a whole ``invoice.issued`` event, or just its
    ``invoice`` object (wrapped in a new event). Raises ``InvalidEventError`` subclasses
    when the correction would fail again, so nothing bad is re-published."""
    try:
        obj: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise SchemaViolationError(f"the corrected payload is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise SchemaViolationError("the corrected payload must be a JSON object")
    event = obj if "event_type" in obj else build_event(obj, source=REPLAY_SOURCE)
    validate_issued(event, rules, today=today)
    return event_key(event).encode(), orjson.dumps(event)


async def replay_records(
    publisher: InvoicePublisher,
    log: ReplayLog,
    records: Sequence[DeadLetterRecord],
    *,
    by: str,
    payload: tuple[bytes, bytes] | None = None,
    progress: Callable[[Replay], None] | None = None,
) -> list[Replay]:
    """Publish each record (or, for a single record, the corrected ``payload`` key and
    value) with the replay header, and record every attempt in the ledger."""
    if payload is not None and len(records) != 1:
        raise ValueError("a corrected payload replaces exactly one record")
    done: list[Replay] = []
    for record in records:
        key, value = payload if payload is not None else (record.key, record.value)
        key_text = None if key is None else key.decode("utf-8", "replace")
        try:
            sent = await publisher.publish_raw(key, value, [replayed_header(record)])
            replay = Replay(record, key_text, payload is not None, published=sent)
        except (InvoiceSyncError, KafkaError, OSError) as exc:
            replay = Replay(record, key_text, payload is not None,
                            error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        await log.record(replay, by=by)
        done.append(replay)
        if progress is not None:
            progress(replay)
    return done


async def select_records(
    settings: Settings, dlq_filter: DlqFilter, positions: Sequence[Position] = ()
) -> tuple[list[DeadLetterRecord], list[Position]]:
    """The dead letters a replay selects (``positions`` and/or the filter; with neither,
    every one), and the requested positions that hold no matching record."""
    found = await read_dlq(settings, None if dlq_filter.empty else dlq_filter,
                           positions=positions or None)  # fmt: skip
    missing = sorted(set(positions) - {(r.partition, r.offset) for r in found})
    return found, missing


async def replay_and_audit(
    settings: Settings,
    ledger: Ledger,
    records: Sequence[DeadLetterRecord],
    *,
    actor: str,
    by: str,
    payload: tuple[bytes, bytes] | None = None,
    progress: Callable[[Replay], None] | None = None,
) -> list[Replay]:
    """:func:`replay_records` through a publisher of its own, audited as ``actor`` (also
    when it fails midway); ``by`` is who the ``dlq_replays`` rows name."""
    async with audited(ledger, actor, "dlq.replay", target=settings.dlq_topic) as audit:
        audit.detail.update(records=[r.position for r in records], corrected=payload is not None)
        async with InvoicePublisher(settings) as publisher:
            done = await replay_records(publisher, ReplayLog(ledger, settings.dlq_topic),
                                        records, by=by, payload=payload,
                                        progress=progress)  # fmt: skip
        failed = sum(not r.ok for r in done)
        audit.outcome = f"{failed} failed" if failed else "ok"
    return done
