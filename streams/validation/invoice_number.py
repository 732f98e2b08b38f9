"""Fully digital e-invoice (数电票) numbers: 20 digits that encode year and region.

Layout: positions 1-2 the issue year's last two digits, 3-4 the province-level
region code, 5 the issuing channel, 6-20 a sequence number.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date

__all__ = ["INVOICE_NUMBER_LENGTH", "invoice_number_format_problem", "invoice_number_problems"]

INVOICE_NUMBER_LENGTH = 20
# [0-9], not \d: \d also matches other scripts' digits, which the platform rejects.
_FORMAT = re.compile(r"[0-9]{20}")


def invoice_number_format_problem(number: str) -> str | None:
    """None when ``number`` is 20 ASCII digits, else a sentence."""
    if _FORMAT.fullmatch(number) is None:
        return (
            f"An invoice number is {INVOICE_NUMBER_LENGTH} digits; "
            f"{_shorten(number)!r} is not ({len(number)} characters)."
        )
    return None


def invoice_number_problems(
    number: str,
    *,
    issue_date: date | None,
    province_codes: Collection[str],
    january_grace_days: int,
) -> list[str]:
    """Every way ``number`` breaks the rules; ``issue_date`` None skips the year check
    (the caller reports the unreadable date itself)."""
    problem = invoice_number_format_problem(number)
    if problem is not None:
        return [problem]
    problems = []
    if issue_date is not None:
        allowed = _allowed_years(issue_date, january_grace_days)
        prefix = number[:2]
        if prefix not in allowed:
            years = " or ".join(f"{y:02d}" for y in sorted(int(a) for a in allowed))
            problems.append(
                f"Invoice number {number} starts with year {prefix}, but an invoice issued on "
                f"{issue_date.isoformat()} must start with {years}."
            )
    region = number[2:4]
    if region not in province_codes:
        problems.append(
            f"Invoice number {number} has region code {region} at positions 3-4, "
            "which is not a province-level region code."
        )
    return problems


def _allowed_years(issue_date: date, january_grace_days: int) -> set[str]:
    years = {f"{issue_date.year % 100:02d}"}
    # Numbers reserved in December are used up in the first days of January.
    if issue_date.month == 1 and issue_date.day <= january_grace_days:
        years.add(f"{(issue_date.year - 1) % 100:02d}")
    return years


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
