"""The business date: invoices are dated in Beijing time whatever the server's zone."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

__all__ = ["BEIJING", "beijing_today"]

#: China has kept UTC+8 without daylight saving since 1991, so no tz database is needed
BEIJING = timezone(timedelta(hours=8), "UTC+08:00")
_OFFSET = 8 * 3600
_DAY = 86400

#: the wall clock, in epoch seconds (a test moves it)
clock: Callable[[], float] = time.time
# The worker asks once per invoice; the date only changes at Beijing midnight, so it is
# kept with the epoch second that midnight falls on (~1 µs an invoice saved).
_until = float("-inf")
_today = date.min


def beijing_today(now: datetime | None = None) -> date:
    """The calendar date in Beijing at ``now`` (default: the current time).

    A naive ``now`` is refused: guessing its zone would shift dates near midnight.
    """
    global _until, _today
    if now is None:
        seconds = clock()
        if _until > seconds >= _until - _DAY:
            return _today
        _today = datetime.fromtimestamp(seconds, BEIJING).date()
        _until = ((seconds + _OFFSET) // _DAY + 1) * _DAY - _OFFSET
        return _today
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(BEIJING).date()
