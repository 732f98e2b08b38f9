from __future__ import annotations

from datetime import date

import pytest

from streams.settings import DEFAULT_PROVINCE_CODES
from streams.validation.invoice_number import (
    invoice_number_format_problem,
    invoice_number_problems,
)

PROVINCES = frozenset(DEFAULT_PROVINCE_CODES)


def problems(number: str, issued: date | None, grace: int = 7) -> list[str]:
    return invoice_number_problems(
        number, issue_date=issued, province_codes=PROVINCES, january_grace_days=grace
    )


def test_spec_example_passes_for_2026() -> None:
    assert problems("26112000000000012345", date(2026, 11, 20)) == []


@pytest.mark.parametrize(
    "number",
    [
        "2611200000000001234",
        "261120000000000123456",
        "2611200000000001234A",
        "",
        "２６112000000000012345",
    ],
)
def test_must_be_20_ascii_digits(number: str) -> None:
    assert invoice_number_format_problem(number) is not None
    [problem] = problems(number, date(2026, 11, 20))
    assert "20 digits" in problem


def test_year_must_match_issue_date() -> None:
    [problem] = problems("25112000000000012345", date(2026, 11, 20))
    assert "year 25" in problem
    assert "26" in problem


@pytest.mark.parametrize(("day", "ok"), [(1, True), (7, True), (8, False), (31, False)])
def test_previous_year_allowed_through_january_grace(day: int, ok: bool) -> None:
    assert (problems("25112000000000012345", date(2026, 1, day)) == []) is ok
    assert problems("26112000000000012345", date(2026, 1, day)) == []


def test_grace_is_configurable() -> None:
    assert problems("25112000000000012345", date(2026, 1, 3), grace=0) != []
    assert problems("25112000000000012345", date(2026, 1, 10), grace=10) == []


def test_no_grace_outside_january() -> None:
    assert problems("25112000000000012345", date(2026, 2, 1)) != []


def test_century_wraps() -> None:
    assert problems("99112000000000012345", date(2100, 1, 2)) == []
    assert problems("00112000000000012345", date(2100, 1, 2)) == []


@pytest.mark.parametrize("region", ["00", "16", "99", "71"])
def test_region_must_be_a_province_code(region: str) -> None:
    [problem] = problems(f"26{region}2000000000012345", date(2026, 11, 20))
    assert f"region code {region}" in problem


@pytest.mark.parametrize("region", DEFAULT_PROVINCE_CODES)
def test_every_province_passes(region: str) -> None:
    assert problems(f"26{region}2000000000012345", date(2026, 11, 20)) == []


def test_year_and_region_both_reported() -> None:
    assert len(problems("25992000000000012345", date(2026, 11, 20))) == 2


def test_without_a_readable_date_only_the_region_is_checked() -> None:
    assert problems("19112000000000012345", None) == []
