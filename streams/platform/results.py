"""What the tax platform answers, as typed values, and the strict reading of its answers.

Anything the contract does not allow (not JSON, a missing field, a float for
money, a timestamp without an offset) becomes a ``PlatformProtocolError``:
guessing at an answer we do not understand could confirm an invoice that was
never stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from streams.errors import (
    PlatformAuthError,
    PlatformMaintenanceError,
    PlatformProtocolError,
    PlatformRateLimitedError,
    PlatformRejectedError,
    PlatformServerError,
    PlatformUnavailableError,
)

# The answers any endpoint may give when it cannot serve us right now.
_UNAVAILABLE: dict[int, tuple[type[PlatformUnavailableError], str]] = {
    429: (PlatformRateLimitedError, "rate limited"),
    503: (PlatformMaintenanceError, "platform in maintenance"),
    500: (PlatformServerError, "server error"),
    502: (PlatformServerError, "bad gateway"),
    504: (PlatformServerError, "gateway timeout"),
}


@dataclass(frozen=True, slots=True)
class Accepted:
    """The platform stored the invoice."""

    platform_ref: str
    accepted_at: datetime  # timezone-aware


@dataclass(frozen=True, slots=True)
class Processing:
    """Taken in but not yet checked: poll the receipt until it settles."""

    receipt_id: str


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    platform_ref: str
    accepted_at: datetime
    invoice: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListedInvoice:
    invoice_number: str
    platform_ref: str
    accepted_at: datetime
    total_with_tax: Decimal
    issue_date: date


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read in full, with what is needed to describe it in an error."""

    request: str  # "METHOD /path?query", for messages
    status: int
    headers: Mapping[str, str] = field(repr=False)
    raw: bytes = field(repr=False)
    invoice_key: str | None = None

    def json(self) -> Payload:
        try:
            data = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise self.unexpected("with a body that is not a JSON object")
        return Payload(data, context=self.request, status=self.status, invoice_key=self.invoice_key)

    def hint(self, name: str) -> str | None:
        """A field of an error body: informative, but not worth failing over."""
        try:
            data = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None
        value = data.get(name) if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    def raise_shared(self) -> None:
        """Credentials, pacing and outages: answered the same way by every endpoint."""
        if self.status == 401:
            raise PlatformAuthError(
                f"{self.request}: HTTP 401 {self.hint('message') or 'credentials refused'}",
                status=401,
                platform_code=self.hint("code") or "UNAUTHORIZED",
                invoice_key=self.invoice_key,
            )
        if self.status in _UNAVAILABLE:
            error, what = _UNAVAILABLE[self.status]
            raise error(
                f"{self.request}: HTTP {self.status} {what} {snippet(self.raw)}",
                status=self.status,
                platform_code=self.hint("code"),
                retry_after=retry_after(self.headers),
                invoice_key=self.invoice_key,
            )

    def not_found(self) -> None:
        """Only the contract's own 404 means "not there"; a proxy's HTML 404 means a bad URL."""
        if self.json().data.get("code") != "NOT_FOUND":
            raise self.unexpected()

    def unexpected(self, what: str = "outside the contract") -> PlatformProtocolError:
        return PlatformProtocolError(
            f"{self.request}: HTTP {self.status} {what}: {snippet(self.raw)}",
            status=self.status,
            platform_code=self.hint("code"),
            invoice_key=self.invoice_key,
        )


class Payload:
    """One JSON object from the platform; each accessor enforces the contract's type."""

    def __init__(
        self, data: Mapping[str, Any], *, context: str, status: int, invoice_key: str | None
    ) -> None:
        self.data = data
        self._context = context
        self._status = status
        self._invoice_key = invoice_key

    def item(self, data: Any, context: str) -> Payload:
        """A nested object (a list item), read with the same strictness."""
        if not isinstance(data, dict):
            raise self.fail(f"{context} is not a JSON object")
        return Payload(
            data, context=f"{self._context}: {context}", status=self._status, invoice_key=None
        )

    def fail(self, problem: str) -> PlatformProtocolError:
        code = self.data.get("code")
        return PlatformProtocolError(
            f"{self._context}: HTTP {self._status} answer outside the contract: {problem}",
            status=self._status,
            platform_code=code if isinstance(code, str) else None,
            invoice_key=self._invoice_key,
        )

    def text(self, name: str) -> str:
        value = self.data.get(name)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{name!r} must be a non-empty string, got {value!r}")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{name!r} must be a string or null, got {value!r}")
        return value

    def timestamp(self, name: str) -> datetime:
        value = self.text(name)
        try:
            # RFC 3339 allows lower-case "t" and "z", which fromisoformat does not.
            parsed = datetime.fromisoformat(value.upper())
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise self.fail(f"{name!r} must be an RFC 3339 time with an offset, got {value!r}")
        return parsed

    def money(self, name: str) -> Decimal:
        value = self.text(name)
        amount = decimal_or_none(value)
        if amount is None:
            raise self.fail(f"{name!r} must be a decimal string, got {value!r}")
        return amount

    def day(self, name: str) -> date:
        value = self.text(name)
        parsed = date_or_none(value)
        if parsed is None:
            raise self.fail(f"{name!r} must be a YYYY-MM-DD date, got {value!r}")
        return parsed

    def obj(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, dict):
            raise self.fail(f"{name!r} must be a JSON object")
        return value

    def accepted(self) -> Accepted:
        return Accepted(self.text("platform_ref"), self.timestamp("accepted_at"))

    def rejection(self, status: int) -> PlatformRejectedError:
        """A 422 body or a REJECTED receipt: permanent, with the platform's code and field."""
        return PlatformRejectedError(
            self.optional_text("message") or "rejected by the platform",
            platform_code=self.text("code"),
            field=self.optional_text("field"),
            status=status,
            invoice_key=self._invoice_key,
        )

    def listed(self) -> ListedInvoice:
        return ListedInvoice(
            invoice_number=self.text("invoice_number"),
            platform_ref=self.text("platform_ref"),
            accepted_at=self.timestamp("accepted_at"),
            total_with_tax=self.money("total_with_tax"),
            issue_date=self.day("issue_date"),
        )


def decimal_or_none(value: object) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def date_or_none(value: object) -> date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None  # fromisoformat would also take "20261120"; the contract says YYYY-MM-DD
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``Retry-After``; unreadable counts as absent rather than fatal."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def key_figures(invoice: Mapping[str, Any]) -> dict[str, object]:
    """What tells our invoice from another stored under its number: what the 409 echo
    carries, so a 409 and a GET after an in-doubt POST judge the same way."""
    buyer = invoice.get("buyer")
    return {
        "total_with_tax": decimal_or_none(invoice.get("total_with_tax")),
        "issue_date": date_or_none(invoice.get("issue_date")),
        # ``or None``: an empty buyer tax id and a missing one mean the same thing.
        "buyer.tax_id": (buyer.get("tax_id") if isinstance(buyer, Mapping) else None) or None,
    }


def invoice_key_of(invoice: Mapping[str, Any]) -> str | None:
    """``{seller_tax_id}:{invoice_number}`` when the invoice carries both."""
    seller = invoice.get("seller")
    # dict first: a decoded object is one, and the check spares Mapping's ABC machinery.
    tax_id = seller.get("tax_id") if isinstance(seller, (dict, Mapping)) else None
    number = invoice.get("invoice_number")
    if isinstance(tax_id, str) and isinstance(number, str):
        return f"{tax_id}:{number}"
    return None


def snippet(raw: bytes, limit: int = 200) -> str:
    """The start of a body for an error message; bodies never carry our secret."""
    text = raw[:limit].decode("utf-8", errors="replace")
    return repr(text + ("…" if len(raw) > limit else ""))
