from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from streams.demo.feed import issued_event
from streams.errors import PlatformInDoubtError, PlatformServerError
from streams.ledger.records import InvoiceKey
from streams.observability.logs import (
    Redactor,
    configure_logging,
    mask_buyer_names,
    mask_tax_ids,
    password_of,
    redact,
)
from streams.processor.records import RawRecord
from streams.security.crypto import new_key
from streams.settings import Settings
from streams.validation.taxid import make_tax_id

from .test_pipeline import Harness

BUYER_ID = make_tax_id("91110108MA01ABCD4")
SELLER_ID = make_tax_id("91310115MA1K3XY42")


@contextmanager
def restored_root() -> Iterator[None]:
    # A context manager inside the test, not a fixture: pytest attaches its own
    # capture handler per phase, and only the call phase's set is ours to restore.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


def _fail(message: str) -> None:
    raise RuntimeError(message)


def capture(json_mode: bool | None, secrets: tuple[str, ...] = ()) -> io.StringIO:
    out = io.StringIO()  # not a TTY
    configure_logging("debug", json_mode, secrets=secrets, stream=out)
    return out


def test_tax_id_keeps_first_four_and_last_two() -> None:
    masked = mask_tax_ids(f"buyer {BUYER_ID} rejected")
    assert masked == f"buyer {BUYER_ID[:4]}{'*' * 12}{BUYER_ID[-2:]} rejected"


def test_invoice_key_keeps_the_sellers_id() -> None:
    text = f"{SELLER_ID}:24110000 retry 2"
    assert mask_tax_ids(text) == text


def test_words_without_digits_are_not_tax_ids() -> None:
    assert mask_tax_ids("ABCDEFGHJKLMNPQRTU") == "ABCDEFGHJKLMNPQRTU"


def test_buyer_names_are_masked() -> None:
    assert mask_buyer_names("buyer_name='北京星河科技有限公司' bad") == "buyer_name='北***' bad"
    assert mask_buyer_names("for Acme Ltd today", ["Acme Ltd"]) == "for A*** today"


def test_redact_secrets_and_url_passwords() -> None:
    text = "sig with s3cr3t-key via postgresql://invoice:hunter2@db:5432/ledger"
    assert redact(text, ["s3cr3t-key", ""]) == (
        "sig with *** via postgresql://invoice:***@db:5432/ledger"
    )
    assert password_of("postgresql://invoice:hunter2@db/x") == "hunter2"
    assert password_of("postgresql://postgres@db/x") is None


def test_json_lines_carry_invoice_key_and_event_id() -> None:
    with restored_root():
        out = capture(None)  # None: a StringIO is no terminal, so JSON
        logging.getLogger("streams.test").info(
            "confirmed %s", "ok", extra={"invoice_key": f"{SELLER_ID}:1", "event_id": "e-1"}
        )
        line = json.loads(out.getvalue())
        assert line["level"] == "info"
        assert line["logger"] == "streams.test"
        assert line["message"] == "confirmed ok"
        assert line["invoice_key"] == f"{SELLER_ID}:1"
        assert line["event_id"] == "e-1"
        assert line["ts"].endswith("+00:00")


def test_secrets_in_arguments_and_tracebacks_never_print() -> None:
    with restored_root():
        out = capture(True, secrets=("sandbox-secret",))
        log = logging.getLogger("streams.test")
        log.warning(
            "signing with %s for %s", "sandbox-secret", BUYER_ID, extra={"buyer_name": "Bob"}
        )
        try:
            _fail("bad secret sandbox-secret")
        except RuntimeError:
            log.exception("boom")
        text = out.getvalue()
        assert "sandbox-secret" not in text
        assert BUYER_ID not in text
        assert "Bob" not in text
        first, second = (json.loads(line) for line in text.splitlines())
        assert first["message"] == f"signing with *** for {BUYER_ID[:4]}{'*' * 12}{BUYER_ID[-2:]}"
        assert "RuntimeError: bad secret ***" in second["exc"]


def test_human_format_and_no_duplicate_handlers() -> None:
    with restored_root():
        capture(False)
        out = capture(False)
        assert len(logging.getLogger().handlers) == 1
        logging.getLogger("streams.x").error("stuck", extra={"invoice_key": "K:1"})
        line = out.getvalue().strip()
        assert "ERROR" in line
        assert line.endswith("streams.x: stuck [invoice_key=K:1]")


def test_redactor_filter_on_a_bare_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key=%s", ("abc123",), None)
    assert Redactor(["abc123"]).filter(record)
    assert record.getMessage() == "key=***"


def test_extra_fields_are_masked_whatever_their_shape() -> None:
    event_id = "5b1c2d3e-1111-4222-8333-444455556666"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.event_id = event_id
    record.reason_code = f"buyer {BUYER_ID}"
    record.topic = f"{event_id}-secret-4"
    assert Redactor(["3e-1111", "secret-4"]).filter(record)
    # A secret inside an id is replaced even where no tax id or name can be.
    assert record.event_id == "5b1c2d***-4222-8333-444455556666"
    assert record.reason_code == f"buyer {BUYER_ID[:4]}{'*' * 12}{BUYER_ID[-2:]}"
    assert record.topic == "5b1c2d***-4222-8333-444455556666-***"


def test_json_lines_of_one_millisecond_share_its_timestamp_and_the_next_moves_on() -> None:
    with restored_root():
        out = capture(True)
        log = logging.getLogger("streams.test")
        for created in (1764672000.1234, 1764672000.1239, 1764672000.1241):
            record = log.makeRecord(log.name, logging.INFO, __file__, 1, "t", None, None)
            record.created = created
            log.handle(record)
        stamps = [line["ts"] for line in _lines(out)]
    assert stamps == ["2025-12-02T10:40:00.123+00:00"] * 2 + ["2025-12-02T10:40:00.124+00:00"]


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    for handler in logging.getLogger().handlers:
        handler.flush()  # the lines of the current loop step, as at exit
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _of(lines: list[dict[str, object]], invoice: dict[str, object]) -> list[dict[str, object]]:
    seller = invoice["seller"]
    assert isinstance(seller, dict)
    key = str(InvoiceKey(seller["tax_id"], str(invoice["invoice_number"])))
    # What an operator does: grep '"invoice_key":"<key>"'.
    return [line for line in lines if line.get("invoice_key") == key]


async def test_one_grep_follows_each_invoice_through_its_outcome() -> None:
    h = Harness(max_attempts=6, park_after=0.05)
    ok, in_doubt, slow = h.invoice(1), h.invoice(2), h.invoice(3)
    bad = h.invoice(4)
    bad["total_amount"] = "1.00"  # totals that do not add up
    h.platform.script[str(in_doubt["invoice_number"])] = [PlatformInDoubtError("timed out")]
    h.platform.script[str(slow["invoice_number"])] = [PlatformServerError("502", status=502)] * 4
    events = [issued_event(inv) for inv in (ok, in_doubt, slow, bad)]
    with restored_root():
        out = io.StringIO()
        configure_logging("info", True, stream=out)
        await h.processor.process([h.record(event) for event in events])
        lines = _lines(out)
    [confirmed] = _of(lines, ok)
    assert confirmed["event_id"] == events[0]["event_id"]
    assert confirmed["reason_code"] is None
    assert str(confirmed["message"]).startswith("confirmed ")
    # the in-doubt POST: its retry, how it settled, the confirmation
    doubt = _of(lines, in_doubt)
    assert [line["reason_code"] for line in doubt] == ["IN_DOUBT", "IN_DOUBT", None]
    assert "settled" in str(doubt[1]["message"])
    assert str(doubt[2]["message"]).startswith("confirmed ")
    [parked] = _of(lines, slow)
    assert parked["reason_code"] == "RETRY_LATER"
    assert parked["event_id"] == events[2]["event_id"]
    failed = _of(lines, bad)
    assert failed[-1]["reason_code"] == "VALIDATION"
    assert "dead-lettered to dlq" in str(failed[-1]["message"])


async def test_an_undecodable_record_is_found_by_its_position() -> None:
    h = Harness()
    with restored_root():
        out = io.StringIO()
        configure_logging("info", True, stream=out)
        await h.processor.process([h.record(b"not json", key=b"k")])
        [*_, line] = _lines(out)
    assert line["reason_code"] == "MALFORMED"
    assert (line["topic"], line["partition"], line["offset"]) == ("invoices.issued", 0, 1)
    assert "invoice_key" not in line


def test_failure_log_masks_buyer_ids_but_keeps_the_key() -> None:
    h = Harness()
    key = InvoiceKey(SELLER_ID, "24110000")
    raw = RawRecord("invoices.issued", 0, 7, str(key).encode(), b"{}")
    with restored_root():
        out = io.StringIO()
        configure_logging("info", True, stream=out)
        h.processor._messages.failure(
            raw, (key, "e-7"), "TAX_MISMATCH", f"buyer {BUYER_ID} unknown", "buyer.tax_id",
            retryable=False, attempts=1, exception_class="PlatformRejectedError",
        )  # fmt: skip
        [line] = _lines(out)
    assert line["invoice_key"] == f"{SELLER_ID}:24110000"
    assert (line["event_id"], line["reason_code"]) == ("e-7", "TAX_MISMATCH")
    assert BUYER_ID not in out.getvalue()


async def test_outcomes_log_nothing_when_info_is_off() -> None:
    h = Harness()
    with restored_root():
        out = io.StringIO()
        configure_logging("warning", True, stream=out)
        await h.processor.process([h.record(issued_event(h.invoice(1)))])
        assert _lines(out) == []


def test_worker_logs_never_print_a_configured_secret() -> None:
    payload_key = "k1:" + new_key()
    settings = Settings(
        platform_app_secret="app-secret-1",  # type: ignore[arg-type]
        database_url="postgresql://invoice:db-pass-2@db:5432/ledger",  # type: ignore[arg-type]
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="invoice-sync",
        kafka_sasl_password="sasl-pass-3",  # type: ignore[arg-type]
        payload_key=payload_key,  # type: ignore[arg-type]
    )
    with restored_root():
        out = capture(True, secrets=tuple(settings.secret_values()))
        logging.getLogger("aiokafka").error(
            "auth failed: %s %s %s %s", "sasl-pass-3", "app-secret-1", "db-pass-2", payload_key
        )
        [line] = _lines(out)
    assert line["message"] == "auth failed: *** *** *** ***"


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_a_loop_steps_routine_lines_are_written_together_at_its_end() -> None:
    log = logging.getLogger("streams.test")
    with restored_root():
        out = _Writes()
        configure_logging("info", True, stream=out)
        for n in range(3):
            log.info("confirmed %d", n)
        assert out.getvalue() == ""  # still in the step that logged them
        await asyncio.sleep(0)
        assert [line["message"] for line in _lines(out)] == [f"confirmed {n}" for n in range(3)]
        assert out.writes == 1


async def test_warnings_are_written_at_once_after_the_lines_before_them() -> None:
    log = logging.getLogger("streams.test")
    with restored_root():
        out = io.StringIO()
        configure_logging("info", True, stream=out)
        log.info("routine")
        log.critical("fault injection: SIGKILL")  # a process killed next loses nothing
        assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == [
            "routine", "fault injection: SIGKILL"]  # fmt: skip


async def test_a_line_from_another_thread_does_not_wait_for_the_loops_step() -> None:
    log = logging.getLogger("streams.test")
    with restored_root():
        out = capture(True)
        log.info("on the loop")
        other = threading.Thread(target=log.info, args=("off the loop",))
        other.start()
        other.join()
        # Written when the other thread logged, before this step ended, and in order.
        assert [line["message"] for line in _lines(out)] == ["on the loop", "off the loop"]


def test_lines_logged_off_the_event_loop_are_written_at_once() -> None:
    with restored_root():
        out = io.StringIO()
        configure_logging("info", True, stream=out)
        logging.getLogger("streams.test").info("no loop here")
        assert "no loop here" in out.getvalue()
