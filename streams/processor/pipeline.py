"""The heart of the worker: a batch of issued records in, ledger and output events out.

A batch is cut into *waves*: wave i holds the i-th record of every Kafka key in the
batch, so events of one invoice are handled in order while different invoices go
to the platform concurrently. Each wave costs two ledger transactions (claim,
outcome) whatever its size, and its output events are acknowledged by the broker
before the batch's offsets may be committed: at-least-once consumption, made
exactly-once in effect by the ledger and the platform's duplicate check.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypeVar

from streams.errors import InvalidEventError, LedgerUnavailableError
from streams.events.outputs import confirmed_event, encode, failed_event
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.platform.results import Accepted
from streams.processor.decisions import Action, decide
from streams.processor.decode import Decoder
from streams.processor.delivery import Delivered, Deliverer, Undeliverable
from streams.processor.health import Health
from streams.processor.ports import LedgerPort, OutMessage, OutputPort
from streams.processor.records import IssuedEvent, RawRecord
from streams.retry.deadletter import DeadLetter

log = logging.getLogger(__name__)
T = TypeVar("T")


class Topics:
    def __init__(self, confirmed: str, failed: str, dlq: str) -> None:
        self.confirmed = confirmed
        self.failed = failed
        self.dlq = dlq


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


class Processor:
    def __init__(
        self,
        *,
        ledger: LedgerPort,
        deliverer: Deliverer,
        output: OutputPort,
        decoder: Decoder,
        topics: Topics,
        health: Health,
        worker_id: str,
        original_wait_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._ledger = ledger
        self._deliverer = deliverer
        self._output = output
        self._decoder = decoder
        self._topics = topics
        self._health = health
        self._worker_id = worker_id
        self._original_wait = original_wait_seconds
        self._sleep = sleep
        # Keys the platform accepted in the wave in flight, before the ledger records it:
        # a red-letter invoice in the same wave as its original may go as soon as these do.
        self._accepted_now: set[InvoiceKey] = set()

    async def process(self, records: Sequence[RawRecord]) -> None:
        for wave in waves(records):
            await self._wave(wave)

    async def _wave(self, wave: list[RawRecord]) -> None:
        out: list[OutMessage] = []
        events: list[IssuedEvent] = []
        for raw in wave:
            try:
                events.append(self._decoder.decode(raw))
            except InvalidEventError as exc:
                log.warning("dead-lettering %s[%d]@%d: %s", raw.topic, raw.partition, raw.offset,
                            exc.message)  # fmt: skip
                out += self._failure(raw, None, exc.reason_code, exc.message, exc.field,
                                     retryable=False, attempts=0,
                                     exception_class=type(exc).__name__)  # fmt: skip
        existing = await self._until_ledger(lambda: self._ledger.load([e.key for e in events]))
        claims: list[Change] = []
        submit: list[tuple[IssuedEvent, InvoiceRecord]] = []
        for event in events:
            current = existing.get(event.key)
            self._plan(event, current, claims, submit, out)
        await self._until_ledger(lambda: self._ledger.apply(claims))

        self._accepted_now.clear()
        results = await asyncio.gather(*(self._deliver(event, rec) for event, rec in submit))
        outcomes = [
            self._outcome(event, record, result, out)
            for (event, record), result in zip(submit, results, strict=True)
        ]
        await self._until_ledger(lambda: self._ledger.apply(outcomes))
        await self._output.publish(out)

    def _plan(
        self,
        event: IssuedEvent,
        current: InvoiceRecord | None,
        claims: list[Change],
        submit: list[tuple[IssuedEvent, InvoiceRecord]],
        out: list[OutMessage],
    ) -> None:
        previous = None if current is None else current.state
        if event.violation is not None:
            exc = event.violation
            if current is not None and current.state == State.CONFIRMED:
                claims.append(Change(current, previous, event.event_id, exc.reason_code,
                                     exc.message, history_only=True))  # fmt: skip
            else:
                failed = replace(
                    _new_record(event, State.FAILED),
                    error_code=exc.reason_code, error_message=exc.message, error_field=exc.field,
                )  # fmt: skip
                claims.append(Change(failed, previous, event.event_id, exc.reason_code,
                                     exc.message, payload=event.raw.value))  # fmt: skip
            out += self._failure(event.raw, event, exc.reason_code, exc.message, exc.field,
                                 retryable=False, attempts=0,
                                 exception_class=type(exc).__name__)  # fmt: skip
            return
        action = decide(current, event.content_hash)
        if action is Action.SUBMIT:
            attempts = current.attempts if current and current.state != State.FAILED else 0
            record = replace(_new_record(event, State.SUBMITTING), attempts=attempts)
            reason = "REPLAY" if previous == State.FAILED else (
                "RESUME" if previous is not None else None)  # fmt: skip
            claims.append(Change(record, previous, event.event_id, reason, payload=event.raw.value))
            submit.append((event, record))
            return
        assert current is not None
        if action is Action.REEMIT:
            claims.append(
                Change(
                    current,
                    previous,
                    event.event_id,
                    "DUPLICATE_RESEND",
                    "identical re-send answered from the ledger",
                    history_only=True,
                )
            )
            out.append(self._confirmation(current, event.event_id))  # fmt: skip
        elif action is Action.LEAVE:
            claims.append(Change(current, previous, event.event_id, "DUPLICATE_RESEND",
                                 "identical re-send while awaiting the platform's receipt",
                                 history_only=True))  # fmt: skip
        else:
            message = (
                f"invoice {event.key} is already {current.state.lower()} on the platform with "
                "different content; issue a red-letter invoice to change it"
            )
            claims.append(Change(current, previous, event.event_id, "DUPLICATE_CONFLICT", message,
                                 history_only=True))  # fmt: skip
            out += self._failure(event.raw, event, "DUPLICATE_CONFLICT", message, None,
                                 retryable=False, attempts=0,
                                 exception_class="DuplicateConflict")  # fmt: skip

    async def _deliver(
        self, event: IssuedEvent, record: InvoiceRecord
    ) -> Delivered | Undeliverable:
        if event.invoice.get("kind") == "red":
            problem = await self._wait_for_original(event)
            if problem is not None:
                return problem
        result = await self._deliverer.deliver(event, record.attempts)
        if isinstance(result, Delivered) and isinstance(result.result, Accepted):
            self._accepted_now.add(event.key)
        return result

    async def _wait_for_original(self, event: IssuedEvent) -> Undeliverable | None:
        """A red-letter invoice may only go once the blue one it reverses is confirmed."""
        original = InvoiceKey(
            event.key.seller_tax_id, str(event.invoice["original_invoice_number"])
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._original_wait
        delay = 0.05
        while True:
            if original in self._accepted_now:
                return None
            record = await self._until_ledger(lambda: self._ledger.get(original))
            if record is not None and record.state == State.CONFIRMED:
                return None
            if loop.time() >= deadline:
                state = "unknown to the ledger" if record is None else record.state.lower()
                return Undeliverable(
                    "ORIGINAL_NOT_CONFIRMED",
                    f"original invoice {original.invoice_number} is {state} after waiting "
                    f"{self._original_wait:.0f}s; send or fix it, then replay this one",
                    "invoice.original_invoice_number", True, 0, "OriginalNotConfirmed",
                    datetime.now(UTC),
                )  # fmt: skip
            await self._sleep(delay)
            delay = min(delay * 2, 2.0)

    def _outcome(
        self,
        event: IssuedEvent,
        record: InvoiceRecord,
        result: Delivered | Undeliverable,
        out: list[OutMessage],
    ) -> Change:
        if isinstance(result, Undeliverable):
            failed = replace(
                record, state=State.FAILED, attempts=result.posts, error_code=result.code,
                error_message=result.message, error_field=result.field,
            )  # fmt: skip
            out += self._failure(event.raw, event, result.code, result.message, result.field,
                                 retryable=result.retryable, attempts=result.posts,
                                 exception_class=result.exception_class,
                                 first_failure_at=result.first_failure_at)  # fmt: skip
            return Change(failed, State.SUBMITTING, event.event_id, result.code, result.message)
        if isinstance(result.result, Accepted):
            confirmed = replace(
                record, state=State.CONFIRMED, attempts=result.posts,
                platform_ref=result.result.platform_ref, accepted_at=result.result.accepted_at,
                confirmed_at=datetime.now(UTC), error_code=None, error_message=None,
                error_field=None,
            )  # fmt: skip
            out.append(self._confirmation(confirmed, event.event_id))
            return Change(confirmed, State.SUBMITTING, event.event_id,
                          detail=f"platform_ref {confirmed.platform_ref}")  # fmt: skip
        pending = replace(
            record, state=State.PENDING, attempts=result.posts, receipt_id=result.result.receipt_id
        )
        return Change(pending, State.SUBMITTING, event.event_id,
                      detail=f"platform receipt {pending.receipt_id} is processing")  # fmt: skip

    def _confirmation(self, record: InvoiceRecord, source_event_id: str) -> OutMessage:
        assert record.platform_ref is not None
        assert record.accepted_at is not None
        event = confirmed_event(
            invoice_number=record.key.invoice_number,
            seller_tax_id=record.key.seller_tax_id,
            platform_ref=record.platform_ref,
            accepted_at=record.accepted_at,
            source_event_id=source_event_id,
            attempts=record.attempts,
        )
        return OutMessage(self._topics.confirmed, str(record.key).encode(), encode(event))

    def _failure(
        self,
        raw: RawRecord,
        event: IssuedEvent | None,
        code: str,
        reason: str,
        field: str | None,
        *,
        retryable: bool,
        attempts: int,
        exception_class: str,
        first_failure_at: datetime | None = None,
    ) -> list[OutMessage]:
        """``invoice.failed`` plus the dead letter: every failure lands in the DLQ."""
        now = datetime.now(UTC)
        failed = failed_event(
            invoice_number=None if event is None else event.key.invoice_number,
            seller_tax_id=None if event is None else event.key.seller_tax_id,
            reason_code=code, reason=reason, field=field, retryable=retryable,
            attempts=attempts, source_event_id=None if event is None else event.event_id,
        )  # fmt: skip
        letter = DeadLetter(
            key=raw.key, value=raw.value, reason_code=code, reason=reason,
            exception_class=exception_class, source_topic=raw.topic,
            source_partition=raw.partition, source_offset=raw.offset, attempts=attempts,
            first_failure_at=first_failure_at or now, last_failure_at=now,
            worker_id=self._worker_id, field=field,
        )  # fmt: skip
        return [
            OutMessage(self._topics.failed, raw.key, encode(failed)),
            OutMessage(self._topics.dlq, raw.key, raw.value, letter.headers()),
        ]

    async def _until_ledger(self, call: Callable[[], Awaitable[T]]) -> T:
        """No upload without a ledger record: while the database is away, wait for it."""
        delay = 0.2
        while True:
            try:
                result = await call()
            except LedgerUnavailableError as exc:
                if self._health.ledger_available:
                    log.error("ledger unavailable, holding intake until it returns: %s", exc)
                self._health.ledger_available = False
                self._health.last_problem = str(exc)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not self._health.ledger_available:
                log.warning("ledger is back; resuming")
                self._health.ledger_available = True
            return result


def _new_record(event: IssuedEvent, state: State) -> InvoiceRecord:
    invoice = event.invoice
    return InvoiceRecord(
        key=event.key,
        state=state,
        content_hash=event.content_hash,
        kind=_str_or_none(invoice.get("kind")),
        issue_date=_date_or_none(invoice.get("issue_date")),
        total_with_tax=_decimal_or_none(invoice.get("total_with_tax")),
        source_event_id=event.event_id,
        source_partition=event.raw.partition,
        source_offset=event.raw.offset,
        issued_at=event.occurred_at,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _date_or_none(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _decimal_or_none(value: object) -> Decimal | None:
    # Failed invoices are recorded too, so the value may be anything the schema let by.
    try:
        return Decimal(value) if isinstance(value, str) else None
    except ArithmeticError:
        return None
