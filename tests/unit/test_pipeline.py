"""The processor's behaviour end to end, with in-memory ports."""

from __future__ import annotations

import asyncio
import hashlib
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from streams.demo.feed import issued_event, make_invoice
from streams.errors import (
    PlatformAuthError,
    PlatformInDoubtError,
    PlatformMaintenanceError,
    PlatformProtocolError,
    PlatformRateLimitedError,
    PlatformRejectedError,
    PlatformServerError,
)
from streams.events.schemas import validate_event
from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.observability.metrics import Metrics
from streams.platform.results import Accepted, Processing
from streams.processor.decode import Decoder, content_hash
from streams.processor.delivery import Deliverer
from streams.processor.health import Health
from streams.processor.messages import Messages, Topics
from streams.processor.pipeline import Processor
from streams.processor.records import RawRecord
from streams.processor.submission import EARLY_HALF_FROM
from streams.processor.waves import waves
from streams.retry.backoff import Backoff
from streams.retry.circuit import CircuitBreaker, CircuitState
from streams.validation.rules import DomainRules

from .fakes import FakeLedger, FakeOutput, FakePlatform, no_sleep

TODAY = date(2026, 11, 20)
TOPICS = Topics("invoices.issued", "confirmed", "failed", "dlq")


class Harness:
    def __init__(
        self,
        max_attempts: int = 4,
        park_after: float = float("inf"),
        breaker: CircuitBreaker | None = None,
        concurrency: int = 8,
    ) -> None:
        self.ledger = FakeLedger()
        self.platform = FakePlatform()
        self.output = FakeOutput()
        self.health = Health()
        self.metrics = Metrics()
        self.offset = 0
        self.rng = random.Random(1)
        self.deliverer = deliverer = Deliverer(
            self.platform, Backoff(0.01, 0.1, max_attempts, random.Random(0)), self.health,
            concurrency=concurrency, sleep=no_sleep, park_after=park_after, breaker=breaker,
            metrics=self.metrics,
        )  # fmt: skip
        self.processor = Processor(
            ledger=self.ledger, deliverer=deliverer, output=self.output,
            decoder=Decoder(DomainRules(), max_bytes=100_000, today=lambda: TODAY),
            messages=Messages(TOPICS, "w1"), health=self.health, original_wait_seconds=60.0,
            sleep=no_sleep, straggler_wait=0.01,
        )  # fmt: skip

    def invoice(self, n: int, **kwargs: Any) -> dict[str, Any]:
        return make_invoice(self.rng, seller_index=0, number=f"26112{n:015d}",
                            issue_date=TODAY, **kwargs)  # fmt: skip

    def record(self, value: bytes | dict[str, Any], key: bytes | None = None) -> RawRecord:
        if isinstance(value, dict):
            inv = value["invoice"]
            key = key or f"{inv['seller']['tax_id']}:{inv['invoice_number']}".encode()
            value = orjson.dumps(value)
        self.offset += 1
        return RawRecord("invoices.issued", 0, self.offset, key, value)

    async def parked(self) -> list[tuple[InvoiceRecord, bytes]]:
        return [(r, self.ledger.payloads[r.key]) for r in self.ledger.rows.values()
                if r.state == State.RECEIVED]  # fmt: skip

    def state(self, invoice: dict[str, Any]) -> State:
        return self.ledger.rows[
            InvoiceKey(invoice["seller"]["tax_id"], invoice["invoice_number"])
        ].state


def decoded(messages: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in messages]


async def until(condition: Any, changed: asyncio.Event, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            changed.clear()
            await changed.wait()


async def test_valid_invoice_is_confirmed_once_and_announced() -> None:
    h = Harness()
    inv = h.invoice(1)
    event = issued_event(inv)
    await h.processor.process([h.record(event)])
    assert h.platform.posts == [inv["invoice_number"]]
    assert h.state(inv) == State.CONFIRMED
    [confirmed] = decoded(h.output.on("confirmed"))
    validate_event("invoice.confirmed", confirmed)
    assert confirmed["platform_ref"] == f"REF-{inv['invoice_number']}"
    assert confirmed["source_event_id"] == event["event_id"]
    assert confirmed["attempts"] == 1
    assert h.output.on("failed") == [] and h.output.on("dlq") == []


async def test_confirmed_event_times_are_rfc3339_with_their_offsets() -> None:
    h = Harness()
    inv = h.invoice(1)
    accepted = datetime(2026, 11, 20, 9, 18, 0, 250000, tzinfo=timezone(timedelta(hours=8)))
    h.platform.script[inv["invoice_number"]] = [Accepted("P-1", accepted)]
    await h.processor.process([h.record(issued_event(inv))])
    [confirmed] = decoded(h.output.on("confirmed"))
    validate_event("invoice.confirmed", confirmed)
    assert confirmed["accepted_at"] == "2026-11-20T09:18:00.250000+08:00"
    record = h.ledger.rows[InvoiceKey(inv["seller"]["tax_id"], inv["invoice_number"])]
    # The event says when the ledger recorded the confirmation.
    assert confirmed["occurred_at"] == record.confirmed_at.isoformat()
    assert datetime.fromisoformat(confirmed["occurred_at"]).utcoffset() == timedelta(0)


async def test_identical_resend_is_answered_from_the_ledger_without_a_post() -> None:
    h = Harness()
    inv = h.invoice(1)
    await h.processor.process([h.record(issued_event(inv))])
    await h.processor.process([h.record(issued_event(inv))])
    assert h.platform.posts == [inv["invoice_number"]]
    refs = {c["platform_ref"] for c in decoded(h.output.on("confirmed"))}
    assert len(h.output.on("confirmed")) == 2 and len(refs) == 1


async def test_resend_with_its_fields_in_another_order_is_the_same_invoice() -> None:
    h = Harness()
    inv = h.invoice(1)
    await h.processor.process([h.record(issued_event(inv))])
    reordered = dict(reversed(list(inv.items())))
    await h.processor.process([h.record(issued_event(reordered))])
    assert h.platform.posts == [inv["invoice_number"]]
    assert len(h.output.on("confirmed")) == 2 and h.output.on("failed") == []


def test_content_hash_is_the_one_earlier_releases_stored() -> None:
    # Ledger rows keep the hash of what was sent: after an upgrade, an identical
    # re-send must still hash the same, or it would fail as a conflict.
    invoice = {"b": 1, "a": {"d": "x", "c": [1, 2]}}
    canonical = b'{"a":{"c":[1,2],"d":"x"},"b":1}'
    assert content_hash(invoice) == hashlib.sha256(canonical).hexdigest()


async def test_changed_resend_of_confirmed_invoice_is_a_conflict_never_an_overwrite() -> None:
    h = Harness()
    inv = h.invoice(1)
    await h.processor.process([h.record(issued_event(inv))])
    changed = {**inv, "remarks": "changed"}
    await h.processor.process([h.record(issued_event(changed))])
    assert h.platform.posts == [inv["invoice_number"]]
    assert h.state(inv) == State.CONFIRMED
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == "DUPLICATE_CONFLICT"
    validate_event("invoice.failed", failed)


async def test_malformed_message_is_dead_lettered_with_original_bytes_and_rest_flow() -> None:
    h = Harness()
    good = h.invoice(1)
    bad = h.record(b"\xff not json", key=b"k-bad")
    await h.processor.process([bad, h.record(issued_event(good))])
    assert h.state(good) == State.CONFIRMED
    [failed] = decoded(h.output.on("failed"))
    validate_event("invoice.failed", failed)
    assert failed["reason_code"] == "MALFORMED"
    assert failed["invoice_number"] is None and failed["dead_lettered"] is True
    [letter] = h.output.on("dlq")
    assert letter.value == b"\xff not json" and letter.key == b"k-bad"
    headers = dict(letter.headers)
    assert headers["reason_code"] == b"MALFORMED"
    assert headers["source_offset"] == str(bad.offset).encode()
    assert {"reason", "exception_class", "source_topic", "source_partition", "attempts",
            "first_failure_at", "last_failure_at", "worker_id"} <= headers.keys()  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (lambda e: e.update(schema_version=99), "SCHEMA_VIOLATION", "schema_version"),
        (lambda e: e["invoice"].pop("lines"), "SCHEMA_VIOLATION", "invoice"),
        (lambda e: e["invoice"].update(total_amount="1.00"), "VALIDATION", "invoice.total_amount"),
        (lambda e: e.__setitem__("invoice", [1]), "SCHEMA_VIOLATION", "invoice"),
    ],
)
async def test_invalid_events_fail_with_code_and_field(mutate: Any, code: str, field: str) -> None:
    h = Harness()
    event = issued_event(h.invoice(1))
    mutate(event)
    await h.processor.process([h.record(orjson.dumps(event), key=b"k")])
    assert h.platform.posts == []
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == code
    assert (failed["field"] or "").startswith(field)
    assert len(h.output.on("dlq")) == 1


async def test_validation_failure_is_recorded_in_the_ledger() -> None:
    h = Harness()
    inv = h.invoice(1)
    inv["total_amount"] = "1.00"
    await h.processor.process([h.record(issued_event(inv))])
    record = h.ledger.rows[InvoiceKey(inv["seller"]["tax_id"], inv["invoice_number"])]
    assert record.state == State.FAILED and record.error_code == "VALIDATION"
    assert record.error_field == "invoice.total_amount"


async def test_transient_errors_are_retried_and_counted() -> None:
    h = Harness()
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [
        PlatformServerError("502", status=502),
        PlatformInDoubtError("timed out"),
    ]
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.CONFIRMED
    [confirmed] = decoded(h.output.on("confirmed"))
    assert confirmed["attempts"] == 3


async def test_exhausted_retries_fail_as_retryable_and_dead_letter() -> None:
    h = Harness(max_attempts=3)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformServerError("500", status=500)] * 3
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.FAILED
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == "RETRIES_EXHAUSTED" and failed["retryable"] is True
    assert failed["attempts"] == 3 and len(h.output.on("dlq")) == 1


async def test_platform_rejection_reports_its_code_and_field() -> None:
    h = Harness()
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [
        PlatformRejectedError("bad buyer id", platform_code="INVALID_TAX_ID", field="buyer.tax_id")
    ]
    await h.processor.process([h.record(issued_event(inv))])
    [failed] = decoded(h.output.on("failed"))
    assert (failed["reason_code"], failed["field"], failed["retryable"]) == (
        "INVALID_TAX_ID", "buyer.tax_id", False)  # fmt: skip


async def test_accepted_later_invoice_shows_as_pending() -> None:
    h = Harness()
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [Processing("R-1")]
    await h.processor.process([h.record(issued_event(inv))])
    record = h.ledger.rows[InvoiceKey(inv["seller"]["tax_id"], inv["invoice_number"])]
    assert record.state == State.PENDING and record.receipt_id == "R-1"
    assert h.output.messages == []


async def test_failed_invoice_resent_is_processed_afresh() -> None:
    h = Harness(max_attempts=1)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformServerError("500", status=500)]
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.FAILED
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.CONFIRMED


async def test_database_outage_holds_the_batch_until_it_returns() -> None:
    h = Harness()
    h.ledger.unavailable_for = 3
    inv = h.invoice(1)
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.CONFIRMED
    assert h.health.ledger_available


async def test_bad_credentials_hold_the_invoice_instead_of_failing_it() -> None:
    h = Harness()
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformAuthError("401", status=401)] * 2
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.CONFIRMED
    assert h.output.on("dlq") == []
    [confirmed] = decoded(h.output.on("confirmed"))
    assert confirmed["attempts"] == 1  # refused requests never reached the platform
    # The gauge an alert watches went to 0 on the 401s and is back at 1.
    assert gauge(h.metrics, "invoice_sync_platform_credentials_ok") == 1
    assert gauge(h.metrics, "invoice_sync_inflight_invoices") == 0


async def test_the_slot_gauges_show_when_the_platform_concurrency_binds() -> None:
    h = Harness()  # 8 slots
    h.platform.hold = asyncio.Event()
    invoices = [h.invoice(n) for n in range(20)]
    batch = asyncio.create_task(h.processor.process([h.record(issued_event(i)) for i in invoices]))
    async with asyncio.timeout(5):
        while len(h.platform.posts) < 8:  # noqa: ASYNC110 (a count of the fake's POSTs)
            await asyncio.sleep(0)
    # All slots held and the rest of the wave waiting for one: what an operator sees
    # when INVOICE_SYNC_PLATFORM_CONCURRENCY is what holds a worker back.
    assert gauge(h.metrics, "invoice_sync_platform_slots") == 8
    assert gauge(h.metrics, "invoice_sync_platform_slots_in_use") == 8
    assert gauge(h.metrics, "invoice_sync_inflight_invoices") == 20
    assert len(h.platform.posts) == 8
    h.platform.hold.set()
    await asyncio.wait_for(batch, 5)
    assert all(h.state(i) == State.CONFIRMED for i in invoices)
    assert gauge(h.metrics, "invoice_sync_platform_slots_in_use") == 0


async def test_the_credentials_gauge_shows_a_refusal_until_a_post_goes_through() -> None:
    h = Harness()
    inv = h.invoice(1)
    seen: list[float] = []
    refused = PlatformAuthError("401", status=401)

    async def sleep(seconds: float) -> None:
        seen.append(gauge(h.metrics, "invoice_sync_platform_credentials_ok"))

    h.deliverer._sleep = sleep
    h.platform.script[inv["invoice_number"]] = [refused]
    await h.processor.process([h.record(issued_event(inv))])
    assert seen == [0]  # while it waited to retry
    assert gauge(h.metrics, "invoice_sync_platform_credentials_ok") == 1


async def test_events_of_one_invoice_keep_their_order_within_a_batch() -> None:
    h = Harness()
    inv = h.invoice(1)
    first, second = h.record(issued_event(inv)), h.record(issued_event(inv))
    other = h.record(issued_event(h.invoice(2)))
    assert [len(w) for w in waves([first, other, second])] == [2, 1]
    await h.processor.process([first, other, second])
    assert h.platform.posts.count(inv["invoice_number"]) == 1
    assert len(h.output.on("confirmed")) == 3


def _large_wave(h: Harness, late: int) -> tuple[list[dict[str, Any]], asyncio.Event]:
    """A wave past EARLY_HALF_FROM whose last ``late`` POSTs wait for the event."""
    invoices = [h.invoice(n) for n in range(1, EARLY_HALF_FROM + 9)]
    release = asyncio.Event()
    h.platform.held = {inv["invoice_number"]: release for inv in invoices[-late:]}
    return invoices, release


def _announced(h: Harness) -> list[str]:
    return sorted(c["invoice_number"] for c in decoded(h.output.on("confirmed")))


async def test_the_answered_half_of_a_large_wave_is_confirmed_before_the_rest_answer() -> None:
    h = Harness(concurrency=64)
    invoices, release = _large_wave(h, late=EARLY_HALF_FROM // 2)
    early, late = invoices[: -EARLY_HALF_FROM // 2], invoices[-EARLY_HALF_FROM // 2 :]
    batch = asyncio.create_task(h.processor.process([h.record(issued_event(i)) for i in invoices]))
    await until(lambda: len(h.output.on("confirmed")) == len(early), h.output.changed)
    assert _announced(h) == sorted(i["invoice_number"] for i in early)
    assert {h.state(i) for i in early} == {State.CONFIRMED}
    assert {h.state(i) for i in late} == {State.SUBMITTING}
    assert not batch.done()  # its offsets wait for the rest
    release.set()
    await asyncio.wait_for(batch, 2)
    assert _announced(h) == sorted(i["invoice_number"] for i in invoices)


async def test_a_refused_early_announcement_fails_the_batch() -> None:
    h = Harness(concurrency=64)
    invoices, release = _large_wave(h, late=EARLY_HALF_FROM // 2)
    h.output.refuse = RuntimeError("broker refused the batch")
    batch = asyncio.create_task(h.processor.process([h.record(issued_event(i)) for i in invoices]))
    await until(lambda: h.output.refuse is None, h.output.changed)
    release.set()
    with pytest.raises(RuntimeError, match="refused"):
        await asyncio.wait_for(batch, 2)


async def test_a_cancelled_large_wave_leaves_no_post_running() -> None:
    h = Harness(concurrency=64)
    invoices, _ = _large_wave(h, late=EARLY_HALF_FROM + 8)
    before = asyncio.all_tasks()
    batch = asyncio.create_task(h.processor.process([h.record(issued_event(i)) for i in invoices]))
    await until(lambda: len(h.platform.posts) == len(invoices), h.platform.changed)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    await asyncio.sleep(0)  # cancelled tasks finish on their next step
    assert asyncio.all_tasks() - before == set()


async def test_an_invoice_in_backoff_does_not_hold_back_its_answered_wave_mates() -> None:
    h = Harness()
    slow, *fast = [h.invoice(n) for n in range(1, 6)]
    h.platform.script[slow["invoice_number"]] = [PlatformServerError("502", status=502)]
    backoff_over = asyncio.Event()

    async def sleep(seconds: float) -> None:
        await backoff_over.wait()

    h.deliverer._sleep = sleep
    batch = asyncio.create_task(
        h.processor.process([h.record(issued_event(i)) for i in [slow, *fast]])
    )
    await until(lambda: len(h.output.on("confirmed")) == len(fast), h.output.changed)
    assert _announced(h) == sorted(i["invoice_number"] for i in fast)
    assert {h.state(i) for i in fast} == {State.CONFIRMED}
    assert h.state(slow) == State.SUBMITTING
    assert not batch.done()  # its offsets wait for the straggler
    backoff_over.set()
    await asyncio.wait_for(batch, 2)
    assert _announced(h) == sorted(i["invoice_number"] for i in [slow, *fast])


async def test_red_invoice_waits_for_its_original_in_the_same_batch() -> None:
    h = Harness()
    blue = h.invoice(1)
    red = h.invoice(2, kind="red", original=blue)
    await h.processor.process([h.record(issued_event(red)), h.record(issued_event(blue))])
    assert h.platform.posts == [blue["invoice_number"], red["invoice_number"]]
    assert h.state(red) == State.CONFIRMED


async def test_red_invoice_is_parked_until_its_original_is_confirmed() -> None:
    h = Harness()
    blue = h.invoice(1)
    red = h.invoice(2, kind="red", original=blue)
    await h.processor.process([h.record(issued_event(red))])
    assert h.state(red) == State.RECEIVED
    assert h.platform.posts == []
    assert h.output.messages == []
    await h.processor.process([h.record(issued_event(blue))])
    await h.processor.resume(await h.parked())
    assert h.platform.posts == [blue["invoice_number"], red["invoice_number"]]
    assert h.state(red) == State.CONFIRMED
    assert len(h.output.on("confirmed")) == 2


async def test_parked_red_invoice_fails_when_its_original_never_comes() -> None:
    h = Harness()
    red = h.invoice(2, kind="red", original=h.invoice(1))
    await h.processor.process([h.record(issued_event(red))])
    parked = [(r._replace(created_at=datetime.now(UTC) - timedelta(hours=1)), p)
              for r, p in await h.parked()]  # fmt: skip
    await h.processor.resume(parked)
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == "ORIGINAL_NOT_CONFIRMED" and failed["retryable"] is True
    assert failed["field"] == "invoice.original_invoice_number"
    assert h.platform.posts == []
    assert h.state(red) == State.FAILED
    [letter] = h.output.on("dlq")
    assert orjson.loads(letter.value)["invoice"]["invoice_number"] == red["invoice_number"]


async def test_red_invoice_is_parked_when_its_original_fails_in_the_same_wave() -> None:
    h = Harness()
    blue = h.invoice(1)
    red = h.invoice(2, kind="red", original=blue)
    h.platform.script[blue["invoice_number"]] = [
        PlatformRejectedError("no", platform_code="INVALID_FIELD", field="remarks")
    ]
    await h.processor.process([h.record(issued_event(blue)), h.record(issued_event(red))])
    codes = {f["invoice_number"]: f["reason_code"] for f in decoded(h.output.on("failed"))}
    assert codes == {blue["invoice_number"]: "INVALID_FIELD"}
    assert h.platform.posts == [blue["invoice_number"]]
    assert h.state(red) == State.RECEIVED  # waits for a corrected original, or its deadline


async def test_invoice_in_long_backoff_is_parked_and_the_rest_moves_on() -> None:
    h = Harness(max_attempts=6, park_after=0.05)
    slow, fast = h.invoice(1), h.invoice(2)
    h.platform.script[slow["invoice_number"]] = [PlatformServerError("502", status=502)] * 4
    await h.processor.process([h.record(issued_event(slow)), h.record(issued_event(fast))])
    assert h.state(fast) == State.CONFIRMED
    parked = h.ledger.rows[InvoiceKey(slow["seller"]["tax_id"], slow["invoice_number"])]
    assert parked.state == State.SUBMITTING and parked.next_attempt_at is not None
    assert h.output.on("failed") == []
    while h.state(slow) == State.SUBMITTING:
        row = h.ledger.rows[parked.key]
        await h.processor.resume([(row, h.ledger.payloads[parked.key])])
    assert h.state(slow) == State.CONFIRMED
    assert h.platform.posts.count(slow["invoice_number"]) == 5


async def test_parked_invoice_still_runs_out_of_retries() -> None:
    h = Harness(max_attempts=3, park_after=0.05)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformServerError("500", status=500)] * 10
    await h.processor.process([h.record(issued_event(inv))])
    key = InvoiceKey(inv["seller"]["tax_id"], inv["invoice_number"])
    for _ in range(10):
        if h.state(inv) != State.SUBMITTING:
            break
        await h.processor.resume([(h.ledger.rows[key], h.ledger.payloads[key])])
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == "RETRIES_EXHAUSTED"
    assert h.platform.posts.count(inv["invoice_number"]) == 3


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"not json at all", "MALFORMED"),
        (b"[1, 2, 3]", "MALFORMED"),
        (b'"a string"', "MALFORMED"),
        ('{"event_type": "invoice.issued", "x": "é"}'.encode("latin-1"), "MALFORMED"),
        (b'{"event_type": "invoice.issued"' + b" " * 200_000 + b"}", "MALFORMED"),
        (b'{"event_type": "invoice.issued", "schema_version": 2}', "SCHEMA_VIOLATION"),
        (b'{"event_type": "something.else"}', "SCHEMA_VIOLATION"),
    ],
    ids=["not-json", "array", "string", "latin-1", "oversized", "unknown-version", "wrong-type"],
)
async def test_poison_is_dead_lettered_and_the_partition_flows(value: bytes, code: str) -> None:
    h = Harness()
    good = h.invoice(1)
    await h.processor.process([h.record(value, key=b"poison"), h.record(issued_event(good))])
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == code
    [letter] = h.output.on("dlq")
    assert letter.value == value
    assert h.state(good) == State.CONFIRMED


async def test_a_replayed_record_that_fails_again_names_its_dlq_origin() -> None:
    h = Harness()
    replayed = RawRecord("invoices.issued", 0, 9, b"k", b"not json",
                         (("replayed_from_dlq_offset", b"2:17"),))  # fmt: skip
    await h.processor.process([replayed])
    [letter] = h.output.on("dlq")
    assert dict(letter.headers)["replayed_from_dlq_offset"] == b"2:17"


async def _healthy() -> bool:
    return True


async def test_a_429_to_the_half_open_trial_does_not_lock_the_breaker() -> None:
    breaker = CircuitBreaker(_healthy, threshold=1, probe_interval=0.001)
    h = Harness(breaker=breaker)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [
        PlatformMaintenanceError("503", status=503),
        PlatformRateLimitedError("429", status=429),  # the half-open trial's answer
    ]
    try:
        async with asyncio.timeout(2):
            await h.processor.process([h.record(issued_event(inv))])
    finally:
        await breaker.close()
    assert h.state(inv) == State.CONFIRMED
    assert breaker.state == CircuitState.CLOSED


async def test_an_outage_longer_than_the_budget_dead_letters_nothing() -> None:
    h = Harness(max_attempts=3)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformMaintenanceError("503", status=503)] * 6
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.CONFIRMED
    assert h.output.on("dlq") == []


async def test_maintenance_opens_the_circuit_and_does_not_use_the_budget() -> None:
    breaker = CircuitBreaker(_healthy, threshold=3, probe_interval=0.001)
    h = Harness(max_attempts=3, breaker=breaker)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformMaintenanceError("503", status=503)]
    states: list[CircuitState] = []
    breaker._on_change = states.append
    try:
        await h.processor.process([h.record(issued_event(inv))])
    finally:
        await breaker.close()
    # The first 503 opened it (the threshold is for 5xx runs); the probe let the retry go.
    assert states == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]
    assert h.state(inv) == State.CONFIRMED


async def test_in_doubt_invoice_out_of_retries_is_confirmed_if_the_platform_holds_it() -> None:
    h = Harness(max_attempts=2)
    inv = h.invoice(1)
    number = inv["invoice_number"]
    h.platform.script[number] = [PlatformInDoubtError("timed out")] * 2
    h.platform.store(inv, "REF-STORED")  # the first POST was stored before the timeout
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.CONFIRMED
    [confirmed] = decoded(h.output.on("confirmed"))
    assert confirmed["platform_ref"] == "REF-STORED"
    assert h.output.on("failed") == [] and h.platform.lookups == [number]


async def test_in_doubt_invoice_is_parked_not_failed_when_the_platform_cannot_say() -> None:
    h = Harness(max_attempts=2)
    inv = h.invoice(1)
    number = inv["invoice_number"]
    h.platform.script[number] = [PlatformInDoubtError("timed out")] * 3
    h.platform.lookup_errors[number] = [PlatformInDoubtError("GET timed out")]
    await h.processor.process([h.record(issued_event(inv))])
    key = InvoiceKey(inv["seller"]["tax_id"], number)
    parked = h.ledger.rows[key]
    assert parked.state == State.SUBMITTING and parked.next_attempt_at is not None
    assert h.output.on("failed") == [] and h.output.on("dlq") == []
    await h.processor.resume([(parked, h.ledger.payloads[key])])
    [failed] = decoded(h.output.on("failed"))  # now the platform says it has nothing
    assert failed["reason_code"] == "RETRIES_EXHAUSTED"


async def test_in_doubt_invoice_stored_with_other_content_is_a_conflict() -> None:
    h = Harness(max_attempts=1)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformInDoubtError("timed out")]
    h.platform.store({**inv, "total_with_tax": "1.00"}, "REF-OTHER")
    await h.processor.process([h.record(issued_event(inv))])
    [failed] = decoded(h.output.on("failed"))
    assert (failed["reason_code"], failed["field"]) == ("DUPLICATE_CONFLICT", "total_with_tax")


async def test_protocol_error_on_the_lookup_parks_too() -> None:
    h = Harness(max_attempts=1)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformInDoubtError("timed out")]
    h.platform.lookup_errors[inv["invoice_number"]] = [PlatformProtocolError("garbled")]
    await h.processor.process([h.record(issued_event(inv))])
    assert h.state(inv) == State.SUBMITTING
    assert h.output.on("failed") == []


@pytest.mark.parametrize(
    "answer", [Processing("R-1"), PlatformServerError("502", status=502)], ids=["pending", "parked"]
)
async def test_invalid_resend_of_an_invoice_in_flight_leaves_its_row_alone(answer: Any) -> None:
    h = Harness(max_attempts=6, park_after=0.0)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [answer]
    await h.processor.process([h.record(issued_event(inv))])
    key = InvoiceKey(inv["seller"]["tax_id"], inv["invoice_number"])
    before = h.ledger.rows[key]
    assert before.state in (State.PENDING, State.SUBMITTING)
    bad = {**inv, "total_amount": "1.00"}
    await h.processor.process([h.record(issued_event(bad))])
    assert h.ledger.rows[key] == before, "receipt id and retry schedule are kept"
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == "VALIDATION"
    assert h.ledger.history[-1].reason_code == "VALIDATION"


async def test_changed_resend_of_a_parked_invoice_is_a_conflict() -> None:
    h = Harness(max_attempts=6, park_after=0.0)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformServerError("502", status=502)]
    await h.processor.process([h.record(issued_event(inv))])
    await h.processor.process([h.record(issued_event({**inv, "remarks": "changed"}))])
    [failed] = decoded(h.output.on("failed"))
    assert failed["reason_code"] == "DUPLICATE_CONFLICT"
    assert h.platform.posts == [inv["invoice_number"]]


async def test_identical_resend_of_a_parked_invoice_is_left_to_the_resume_loop() -> None:
    h = Harness(max_attempts=6, park_after=0.0)
    inv = h.invoice(1)
    h.platform.script[inv["invoice_number"]] = [PlatformServerError("502", status=502)]
    await h.processor.process([h.record(issued_event(inv))])
    await h.processor.process([h.record(issued_event(inv))])
    assert h.platform.posts == [inv["invoice_number"]]
    assert h.state(inv) == State.SUBMITTING and h.output.messages == []


def _three_equal_lines(h: Harness, n: int) -> dict[str, Any]:
    """A blue invoice of three identical lines, so reds of one or two of them are easy."""
    inv = h.invoice(n)
    lines = [{**inv["lines"][0], "line_no": no} for no in (1, 2, 3)]
    amount = sum(Decimal(line["amount"]) for line in lines)
    tax = sum(Decimal(line["tax_amount"]) for line in lines)
    return {**inv, "lines": lines, "total_amount": str(amount), "total_tax": str(tax),
            "total_with_tax": str(amount + tax)}  # fmt: skip


def _red(h: Harness, n: int, blue: dict[str, Any], lines: int) -> dict[str, Any]:
    """A red-letter invoice reversing the first ``lines`` lines of ``blue``."""
    return h.invoice(n, kind="red", original={**blue, "lines": blue["lines"][:lines]})


async def test_red_invoice_exceeding_its_original_fails_without_a_post() -> None:
    h = Harness()
    blue = _three_equal_lines(h, 1)
    await h.processor.process([h.record(issued_event(blue))])
    red = _red(h, 2, {**blue, "lines": blue["lines"] * 2}, lines=4)
    await h.processor.process([h.record(issued_event(red))])
    assert h.platform.posts == [blue["invoice_number"]]
    assert h.state(red) == State.FAILED
    [failed] = decoded(h.output.on("failed"))
    validate_event("invoice.failed", failed)
    assert (failed["reason_code"], failed["field"]) == ("VALIDATION", "invoice.total_with_tax")
    reversed_, total = red["total_with_tax"].lstrip("-"), blue["total_with_tax"]
    assert (
        f"reverses {reversed_}" in failed["reason"] and f"only {total} remains" in failed["reason"]
    )
    assert len(h.output.on("dlq")) == 1


@pytest.mark.parametrize("original_first", [True, False], ids=["confirmed-before", "same-wave"])
async def test_two_reds_that_together_exceed_their_original_send_only_the_first(
    original_first: bool,
) -> None:
    h = Harness()
    blue = _three_equal_lines(h, 1)
    first, second = _red(h, 2, blue, lines=2), _red(h, 3, blue, lines=2)
    batch = [h.record(issued_event(first)), h.record(issued_event(second))]
    if original_first:
        await h.processor.process([h.record(issued_event(blue))])
    else:
        batch.insert(0, h.record(issued_event(blue)))
    await h.processor.process(batch)
    assert h.platform.posts == [blue["invoice_number"], first["invoice_number"]]
    assert (h.state(first), h.state(second)) == (State.CONFIRMED, State.FAILED)
    [failed] = decoded(h.output.on("failed"))
    assert failed["invoice_number"] == second["invoice_number"]
    assert failed["field"] == "invoice.total_with_tax"
    assert h.ledger.credit_queries == 1  # one query for the wave, not one per red


async def test_red_that_exactly_uses_up_its_original_is_sent_and_the_next_one_fails() -> None:
    h = Harness()
    blue = _three_equal_lines(h, 1)
    two_thirds, last_third, one_more = (_red(h, n, blue, lines) for n, lines in
                                        ((2, 2), (3, 1), (4, 1)))  # fmt: skip
    for inv in (blue, two_thirds, last_third, one_more):
        await h.processor.process([h.record(issued_event(inv))])
    assert h.state(last_third) == State.CONFIRMED
    assert h.state(one_more) == State.FAILED
    assert h.platform.posts == [i["invoice_number"] for i in (blue, two_thirds, last_third)]
    [failed] = decoded(h.output.on("failed"))
    assert "only 0.00 remains" in failed["reason"]


async def test_parked_reds_that_together_exceed_their_original_send_only_the_first() -> None:
    h = Harness()
    blue = _three_equal_lines(h, 1)
    first, second = _red(h, 2, blue, lines=2), _red(h, 3, blue, lines=2)
    await h.processor.process([h.record(issued_event(first)), h.record(issued_event(second))])
    assert h.platform.posts == [] and h.ledger.credit_queries == 0
    await h.processor.process([h.record(issued_event(blue))])
    await h.processor.resume(await h.parked())
    assert h.platform.posts == [blue["invoice_number"], first["invoice_number"]]
    assert (h.state(first), h.state(second)) == (State.CONFIRMED, State.FAILED)
    [failed] = decoded(h.output.on("failed"))
    assert (failed["reason_code"], failed["field"]) == ("VALIDATION", "invoice.total_with_tax")
    assert len(h.output.on("dlq")) == 1 and h.ledger.credit_queries == 1


def gauge(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value
