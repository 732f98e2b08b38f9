"""The heart of the worker: a batch of issued records in, ledger and output events out.

A batch is cut into *waves*: wave i holds the i-th record of every Kafka key in the
batch, so events of one invoice are handled in order while different invoices go
to the platform concurrently. Each wave costs two ledger writes whatever its size, one
statement for its claims and one for its outcomes (more when some answers are recorded
and announced while the rest are on their way: the first half of a large wave's, and those
that waited long for a straggler; ``streams.processor.submission``), and its output
events are acknowledged by the broker
before the batch's offsets may be committed: at-least-once consumption, made
exactly-once in effect by the ledger and the platform's duplicate check.

A red-letter invoice whose original is not confirmed yet is *parked* in the
ledger (state RECEIVED, with its payload) instead of holding up the partition;
``resume`` sends it once the original is confirmed, or fails it after
``original_wait_seconds``. Parking in the ledger, not in memory, survives a crash.

Before a red-letter invoice leaves for the platform it must fit in what remains of
its original: the original's total less the confirmed red-letter invoices against
it (one ledger query per wave) and the reds already let through in the same wave.
One that does not fit fails as ``VALIDATION`` on ``invoice.total_with_tax`` and is
never POSTed; the platform would only answer 422 ``RED_EXCEEDS_ORIGINAL``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from streams.errors import InvalidEventError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.observability.metrics import Metrics
from streams.processor.crashpoints import NO_CRASH, CrashPoints
from streams.processor.decisions import Action, decide
from streams.processor.decode import Decoder
from streams.processor.delivery import Deliverer
from streams.processor.health import Health
from streams.processor.ledgerwait import LedgerGuard
from streams.processor.messages import Messages
from streams.processor.outcomes import failed, failure_of
from streams.processor.ports import LedgerPort, OutMessage, OutputPort
from streams.processor.records import IssuedEvent, RawRecord, new_record
from streams.processor.redletter import (
    WAITING_FOR_ORIGINAL,
    confirmed,
    original_missing,
    over_credit,
)
from streams.processor.submission import STRAGGLER_WAIT, Submission, Submitter
from streams.processor.waves import waves

log = logging.getLogger(__name__)


class Processor:
    def __init__(
        self,
        *,
        ledger: LedgerPort,
        deliverer: Deliverer,
        output: OutputPort,
        decoder: Decoder,
        messages: Messages,
        health: Health,
        original_wait_seconds: float,
        crash: CrashPoints = NO_CRASH,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        straggler_wait: float = STRAGGLER_WAIT,
    ) -> None:
        self._ledger = ledger
        self._output = output
        self._decoder = decoder
        self._messages = messages
        self._original_wait = original_wait_seconds
        self._crash = crash
        self._metrics = metrics or Metrics()
        self._guard = LedgerGuard(health, sleep)
        self._submitter = Submitter(ledger=ledger, deliverer=deliverer, output=output,
                                    messages=messages, guard=self._guard,
                                    straggler_wait=straggler_wait)  # fmt: skip

    async def process(self, records: Sequence[RawRecord]) -> None:
        self._metrics.consumed(len(records))
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
                out += self._messages.failure(raw, None, exc.reason_code, exc.message, exc.field,
                                              retryable=False, attempts=0,
                                              exception_class=type(exc).__name__)  # fmt: skip
        keys = [e.key for e in events] + [k for e in events if (k := e.original)]
        existing = await self._guard.call(lambda: self._ledger.load(keys))
        in_wave = {e.key for e in events}
        credit = await self._credited({
            k for e in events
            if e.violation is None and (k := e.original) is not None
            and (k in in_wave or confirmed(existing.get(k)))
        })  # fmt: skip
        claims: list[Change] = []
        submit: list[Submission] = []
        # Originals first, so a red-letter invoice knows whether its original is in this wave.
        for event in sorted(events, key=lambda e: e.original is not None):
            self._plan(event, existing, credit, claims, submit, out)
        lost = await self._guard.call(lambda: self._ledger.apply(claims))
        # A claim another worker beat us to: that worker owns the invoice now.
        await self._submitter.submit([s for s in submit if s[0].key not in lost], out)
        self._crash.reached("after_ledger")
        await self._output.publish(out)
        self._crash.reached("before_commit")

    def _plan(
        self,
        event: IssuedEvent,
        existing: dict[InvoiceKey, InvoiceRecord],
        credit: dict[InvoiceKey, Decimal],
        claims: list[Change],
        submit: list[Submission],
        out: list[OutMessage],
    ) -> None:
        current = existing.get(event.key)
        previous = None if current is None else current.state
        identity = (event.key, event.event_id)
        if event.violation is not None:
            # Confirmed, or on its way (its receipt id, its parked retry): the row
            # belongs to the earlier event; this one only leaves a trace.
            in_flight = current is not None and current.state != State.FAILED
            self._reject(event, event.violation, current, claims, out, keep_row=in_flight)
            return
        action = decide(current, event.content_hash, datetime.now(UTC))
        if action is Action.SUBMIT:
            attempts = current.attempts if current and current.state != State.FAILED else 0
            original = event.original
            # Only a red-letter invoice looks for its original among this wave's submissions
            # (a dict of them per event made every wave quadratic).
            planned = None if original is None else _submitted(submit, original)
            found = None if original is None else planned or existing.get(original)
            ready = original is None or planned is not None or confirmed(found)
            state = State.SUBMITTING if ready else State.RECEIVED
            if previous == State.RECEIVED and not ready:
                return  # already parked; the resume loop has it
            # Built once, not built and replaced: a frozen record costs ~8 µs a copy.
            record = new_record(event, state, attempts=attempts)
            # A SUBMITTING red was let through before and may be stored already: its
            # re-post is the platform's to answer (a 409 echo), not this check's.
            if ready and found is not None and previous != State.SUBMITTING:
                problem = over_credit(record, found, credit)
                if problem is not None:
                    self._reject(event, problem, current, claims, out, keep_row=False)
                    return
            reason = WAITING_FOR_ORIGINAL if not ready else (
                "REPLAY" if previous == State.FAILED else
                "RESUME" if previous is not None else None)  # fmt: skip
            claims.append(Change(record, previous, event.event_id, reason, payload=event.raw.value))
            if ready:
                submit.append((event, record))
            else:
                self._messages.parked(event.key, event.event_id, WAITING_FOR_ORIGINAL,
                                      f"original {original} is not confirmed yet")  # fmt: skip
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
            out.append(self._messages.confirmation(current, event.event_id, fresh=False))
        elif action is Action.LEAVE:
            owner = ("the platform is still checking it" if current.state == State.PENDING
                     else "it is parked for a retry")  # fmt: skip
            claims.append(Change(current, previous, event.event_id, "DUPLICATE_RESEND",
                                 f"identical re-send while {owner}",
                                 history_only=True))  # fmt: skip
        else:
            message = (
                f"invoice {event.key} is already {current.state.lower()} with different "
                "content; issue a red-letter invoice to change it"
            )
            claims.append(Change(current, previous, event.event_id, "DUPLICATE_CONFLICT", message,
                                 history_only=True))  # fmt: skip
            out += self._messages.failure(event.raw, identity, "DUPLICATE_CONFLICT", message,
                                          None, retryable=False, attempts=0,
                                          exception_class="DuplicateConflict")  # fmt: skip

    def _reject(
        self,
        event: IssuedEvent,
        exc: InvalidEventError,
        current: InvoiceRecord | None,
        claims: list[Change],
        out: list[OutMessage],
        *,
        keep_row: bool,
    ) -> None:
        """Fail ``event`` on a broken rule and dead-letter it; with ``keep_row`` the
        ledger row stays as it is and only the history notes it."""
        previous = None if current is None else current.state
        context = {"invoice_key": str(event.key), "event_id": event.event_id}
        log.warning("invoice %s failed validation: %s", event.key, exc.message, extra=context)
        if keep_row:
            assert current is not None
            claims.append(Change(current, previous, event.event_id, exc.reason_code,
                                 exc.message, history_only=True))  # fmt: skip
        else:
            failed = new_record(event, State.FAILED)._replace(
                error_code=exc.reason_code, error_message=exc.message, error_field=exc.field,
            )  # fmt: skip
            claims.append(Change(failed, previous, event.event_id, exc.reason_code,
                                 exc.message, payload=event.raw.value))  # fmt: skip
        out += self._messages.failure(event.raw, (event.key, event.event_id), exc.reason_code,
                                      exc.message, exc.field, retryable=False, attempts=0,
                                      exception_class=type(exc).__name__)  # fmt: skip

    async def _credited(self, originals: set[InvoiceKey]) -> dict[InvoiceKey, Decimal]:
        if not originals:
            return {}
        return await self._guard.call(lambda: self._ledger.credited(sorted(originals)))

    async def resume(self, parked: Sequence[tuple[InvoiceRecord, bytes]]) -> None:
        """Finish invoices the ledger holds unfinished: parked red-letter invoices whose
        original may now be confirmed, and attempts a crashed worker left mid-flight."""
        out: list[OutMessage] = []
        claims: list[Change] = []
        submit: list[Submission] = []
        # Parked reds now free to go, with their original: they must fit in it first.
        freed: list[tuple[InvoiceRecord, IssuedEvent, InvoiceRecord]] = []
        now = datetime.now(UTC)
        for record, payload in parked:
            raw = RawRecord(
                self._messages.topics.issued,
                record.source_partition or 0,
                record.source_offset or 0,
                str(record.key).encode(),
                payload,
            )
            try:
                event = self._decoder.decode(raw)
            except InvalidEventError as exc:
                self._reject_parked(record, raw, record.source_event_id or "", exc, claims, out)
                continue
            original = event.original
            if record.state == State.RECEIVED and original is not None:
                found = await self._guard.call(partial(self._ledger.get, original))
                if found is None or found.state != State.CONFIRMED:
                    waited = (now - (record.created_at or now)).total_seconds()
                    if waited >= self._original_wait:
                        result = original_missing(original, found, self._original_wait)
                        claims.append(failed(record, result.code, result.message,
                                                   result.field))  # fmt: skip
                        out += failure_of(self._messages, event, result, record.attempts)
                    continue
                freed.append((record, event, found))
                continue
            self._resume(record, event, claims, submit)
        credit = await self._credited({blue.key for _, _, blue in freed})
        for record, event, blue in freed:
            problem = over_credit(record, blue, credit)
            if problem is None:
                self._resume(record, event, claims, submit)
            else:
                self._reject_parked(record, event.raw, event.event_id, problem, claims, out)
        lost = await self._guard.call(lambda: self._ledger.apply(claims))
        await self._submitter.submit([s for s in submit if s[0].key not in lost], out)
        await self._output.publish(out)

    def _resume(
        self,
        record: InvoiceRecord,
        event: IssuedEvent,
        claims: list[Change],
        submit: list[Submission],
    ) -> None:
        submitting = record._replace(state=State.SUBMITTING)
        claims.append(Change(submitting, record.state, event.event_id, "RESUME"))
        submit.append((event, submitting))

    def _reject_parked(
        self,
        record: InvoiceRecord,
        raw: RawRecord,
        event_id: str,
        exc: InvalidEventError,
        claims: list[Change],
        out: list[OutMessage],
    ) -> None:
        log.warning("invoice %s failed validation: %s", record.key, exc.message,
                    extra={"invoice_key": str(record.key), "event_id": event_id})  # fmt: skip
        claims.append(failed(record, exc.reason_code, exc.message, exc.field))
        out += self._messages.failure(raw, (record.key, event_id), exc.reason_code, exc.message,
                                      exc.field, retryable=False, attempts=record.attempts,
                                      exception_class=type(exc).__name__)  # fmt: skip


def _submitted(submit: list[Submission], key: InvoiceKey) -> InvoiceRecord | None:
    return next((record for event, record in submit if event.key == key), None)
