"""``GET /invoices`` query parameters: parsed and bounded, or a precise 400."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from streams.ledger.queries import MAX_PAGE_SIZE, BadCursorError, decode_cursor
from streams.ledger.states import State

DEFAULT_PAGE_SIZE = 100
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BadRequestError(ValueError):
    """A query parameter or body field the API cannot take; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ListQuery:
    seller_tax_id: str
    date_from: date
    date_to: date
    state: State | None
    page_size: int
    page_token: str | None


def _text(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "")
    if not value:
        raise BadRequestError(name, f"{name} is required")
    if "\x00" in value:
        raise BadRequestError(name, f"{name} must not contain NUL characters")
    return value


def _day(query: Mapping[str, str], name: str) -> date:
    return parse_day(name, _text(query, name))


def parse_day(name: str, value: str) -> date:
    bad = BadRequestError(name, f"{name} must be a date, YYYY-MM-DD")
    if _DATE.fullmatch(value) is None:
        raise bad
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise bad from None


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    """Raises ``BadRequestError`` naming the first bad parameter."""
    seller = _text(query, "seller_tax_id")
    date_from, date_to = _day(query, "from"), _day(query, "to")
    if date_from > date_to:
        raise BadRequestError("from", "from must not be after to")
    state = None
    if query.get("state"):
        try:
            state = State(query["state"])
        except ValueError:
            raise BadRequestError("state", f"state must be one of {', '.join(State)}") from None
    size_text = query.get("page_size", str(DEFAULT_PAGE_SIZE))
    if not size_text.isascii() or not size_text.isdigit() or len(size_text) > 6:
        raise BadRequestError("page_size", f"page_size must be a whole number 1..{MAX_PAGE_SIZE}")
    page_size = int(size_text)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadRequestError("page_size", f"page_size must be a whole number 1..{MAX_PAGE_SIZE}")
    token = query.get("page_token") or None
    if token is not None:
        try:
            decode_cursor(token)
        except BadCursorError:
            raise BadRequestError("page_token", "page_token is not one this API issued") from None
    return ListQuery(seller, date_from, date_to, state, page_size, token)
