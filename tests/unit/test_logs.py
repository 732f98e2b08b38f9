from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from streams.observability.logs import (
    Redactor,
    configure_logging,
    mask_buyer_names,
    mask_tax_ids,
    password_of,
    redact,
)
from streams.validation.taxid import make_tax_id

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
