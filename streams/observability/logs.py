"""Logging setup: one JSON object per line for machines, plain lines for people.

Every record passes :class:`Redactor` on the handler before it is formatted: it
replaces configured secret values and URL passwords with ``***``, masks tax
ids (first 4 and last 2 characters kept) and buyer names. The filter sits on
the handler, not on a logger, because logger filters do not see records that
propagate from child loggers (``streams.*``, ``aiokafka``, ``faust``).

Pass ``extra={"invoice_key": ..., "event_id": ...}`` on the lines that matter;
JSON lines carry those as fields, so ``grep '"invoice_key":"<key>"'`` follows
one invoice through every worker.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO
from urllib.parse import urlsplit

import orjson

__all__ = [
    "EXTRA_FIELDS",
    "HumanFormatter",
    "JsonFormatter",
    "Redactor",
    "StepHandler",
    "configure_logging",
    "mask_buyer_names",
    "mask_tax_ids",
    "password_of",
    "redact",
]

#: ``extra=`` keys copied into JSON lines (and shown in brackets on a terminal)
EXTRA_FIELDS = ("invoice_key", "event_id", "reason_code", "topic", "partition", "offset")
# The ones the redactor cleans: all but the invoice key, the seller's own registered id
# and a number, kept readable so that one grep follows an invoice (see _TAX_ID).
_CLEANED_FIELDS = tuple(field for field in EXTRA_FIELDS if field != "invoice_key")

# 18 letters or digits with at least one digit, so that ordinary words of 18 letters
# are left alone. An id directly followed by ":"
# is the seller part of an invoice key (``{seller_tax_id}:{number}``): the
# seller's own registered id, printed on every invoice it issues, and the handle
# one greps by, so it stays readable.
# Any case and any letter: a malformed id (lower case, a letter outside the code
# alphabet) is exactly what a validation failure quotes, and must be masked too.
_TAX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9A-Za-z]{0,17}[0-9])([0-9A-Za-z]{18})(?![0-9A-Za-z:])")
# buyer_name=..., "buyer_name": "...", buyer 'X': the ways a name can end up in a message.
_BUYER_NAME = re.compile(
    r"""(?P<label>buyer(?:[_ .]name)?["']?\s*[:=]?\s*)(?P<q>["'])(?P<name>[^"']+)(?P=q)""",
    re.IGNORECASE,
)
# An id of this form holds no tax id (no run of 18 letters and digits) and no buyer
# label, so only the secrets are looked for in it: event ids are on every outcome line.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+(?P<tail>@)", re.I)


def mask_tax_id(tax_id: str) -> str:
    return tax_id[:4] + "*" * (len(tax_id) - 6) + tax_id[-2:]


def mask_tax_ids(text: str) -> str:
    return _TAX_ID.sub(lambda m: mask_tax_id(m.group(1)), text)


def _mask_name(name: str) -> str:
    # The first character tells a person which customer it probably is; no more.
    return name[:1] + "***" if name else name


def mask_buyer_names(text: str, names: Iterable[str] = ()) -> str:
    """Mask labelled buyer names (``buyer_name='…'``) and any of ``names`` anywhere."""
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = text.replace(name, _mask_name(name))
    # The label is required, and looking for it first is a fraction of the pattern's scan.
    if "buyer" not in text.lower():
        return text
    return _BUYER_NAME.sub(lambda m: f"{m['label']}{m['q']}{_mask_name(m['name'])}{m['q']}", text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value and any URL password replaced by ``***``."""
    return _redact(text, _longest_first(secrets))


def _longest_first(secrets: Iterable[str]) -> tuple[str, ...]:
    # Longest first, so a secret containing another is replaced whole.
    return tuple(sorted({s for s in secrets if s}, key=len, reverse=True))


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    # Every log line passes here; most hold no URL, and the scan costs more than the rest.
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)


def password_of(url: str) -> str | None:
    """The password in a connection URL, to pass to :func:`configure_logging` as a secret."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Redactor(logging.Filter):
    """Rewrites each record's message (and traceback) with secrets and personal data masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = _longest_first(secrets)

    def clean(self, text: str, buyer_names: Iterable[str] = ()) -> str:
        return mask_buyer_names(mask_tax_ids(_redact(text, self.secrets)), buyer_names)

    def filter(self, record: logging.LogRecord) -> bool:
        buyer = record.__dict__.pop("buyer_name", None)
        names = (buyer,) if isinstance(buyer, str) else ()
        # Merge args first: a secret can arrive as an argument as easily as in the format.
        record.msg = self.clean(record.getMessage(), names)
        record.args = None
        if record.exc_info and not record.exc_text:
            # The formatter reuses exc_text when set, so this is the only rendering.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text, names)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info, names)
        fields = record.__dict__
        for field in _CLEANED_FIELDS:
            value = fields.get(field)
            if not isinstance(value, str):
                continue
            if _UUID.fullmatch(value) is not None:
                fields[field] = _redact(value, self.secrets)
            else:
                fields[field] = self.clean(value, names)
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The lines of one loop step share their millisecond: its text is made once.
        self._ms = -1
        self._ts = ""

    def _timestamp(self, created: float) -> str:
        ms = int(created * 1000)
        if ms != self._ms:
            self._ts = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
            self._ms = ms
        return self._ts

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in EXTRA_FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        # default=str: an extra value we cannot encode must not cost the log line.
        # Compact separators, so `grep '"invoice_key":"<key>"'` (docs/operations.md) matches.
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # what orjson refuses (an int over 64 bits, a non-str key)
            return jsonlib.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class StepHandler(logging.StreamHandler[IO[str]]):
    """A stream handler that writes the INFO and DEBUG lines of one event-loop step at
    the end of the step, in one write.

    A worker logs a line per invoice, and a write per line was a system call, with the
    GIL released and taken back each time (~2.5 % of the event loop's time on a
    backlog). A step's lines reach the stream before the loop waits for anything, so
    before any reply to what they describe can arrive; a kill in the middle of a step
    loses that step's routine lines. WARNING and above, and lines logged off the
    loop, are written at once, after anything still pending, so order holds.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None
        self._flush_thread = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
            flush_on = self._flush_on
            if (
                record.levelno < logging.WARNING
                and flush_on is not None
                and self._flush_thread == threading.get_ident()
                and flush_on.is_running()
            ):
                # The loop whose step ends with a flush runs on this thread, so it is the
                # running loop: the line waits for that flush. (Asking asyncio which
                # loop runs costs a getpid system call per line in Python 3.11.)
                return
            loop = asyncio._get_running_loop()
            if record.levelno >= logging.WARNING or loop is None:
                self._write_pending()
            elif self._flush_on is None:
                self._flush_on = loop
                self._flush_thread = threading.get_ident()
                loop.call_soon(self._end_of_step)
            elif self._flush_on is not loop:  # another loop's lines wait in the list
                self._write_pending()
        except Exception:  # noqa: BLE001 - a handler reports its failures, never raises
            self.handleError(record)

    def _end_of_step(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                self._write_pending()
            except Exception:  # noqa: BLE001 - as in emit
                self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))

    def _write_pending(self) -> None:
        self._flush_on = None
        if self._pending:
            lines, self._pending = self._pending, []
            self.stream.write("\n".join(lines) + self.terminator)
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
            super().flush()


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = [f"{f}={record.__dict__[f]}" for f in EXTRA_FIELDS if f in record.__dict__]
        return f"{text} [{' '.join(fields)}]" if fields else text


def configure_logging(
    level: str,
    json: bool | None,
    *,
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route all logging to one handler on ``stream`` (stderr), replacing earlier setups.

    ``json=None`` picks JSON unless the stream is a terminal. Returns the handler.
    """
    out = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not out.isatty()
    handler = StepHandler(out)
    handler.setFormatter(JsonFormatter() if as_json else HumanFormatter())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    # Replace, not add: configure twice (tests, `up` starting a worker) and
    # every line would be printed twice.
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # No formatter prints the caller, thread or process: don't collect them for every
    # record (the logging HOWTO's "Optimization"; the caller is a stack walk per line).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler
