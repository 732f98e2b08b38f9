"""The business date: invoices are dated in Beijing time whatever the server's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["BEIJING", "beijing_today"]

#: China has kept UTC+8 without daylight saving since 1991, so no tz database is needed
BEIJING = timezone(timedelta(hours=8), "UTC+08:00")


def beijing_today(now: datetime | None = None) -> date:
    """The calendar date in Beijing at ``now`` (default: the current time).

    A naive ``now`` is refused: guessing its zone would shift dates near midnight.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(BEIJING).date()
