"""Values at the edges of the validation fast paths get the full checks' answers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.validation.money import DecimalFormatError, parse_decimal, round_half_up
from streams.validation.taxid import check_character, tax_id_problem

D = Decimal
KNOWN_GOOD = "91110000600037341L"


@pytest.mark.parametrize(
    ("text", "places"),
    [("9" * 20, 2), ("-" + "9" * 20 + ".99", 2), ("0" * 5 + "9" * 20, 2), ("0" * 30, 8),
     ("1.123", 3), ("12", 0), ("0.1234567890", 10)],
)  # fmt: skip
def test_parse_accepts_past_the_fast_path(text: str, places: int) -> None:
    assert parse_decimal(text, places=places) == D(text)


@pytest.mark.parametrize(
    ("text", "places", "words"),
    [("1" * 21, 8, "too large"), ("1.5", 0, "1 decimal places"), ("1.1234", 3, "4 decimal"),
     ("1.123456789", 8, "9 decimal places")],
)  # fmt: skip
def test_parse_rejects_past_the_fast_path(text: str, places: int, words: str) -> None:
    with pytest.raises(DecimalFormatError, match=words):
        parse_decimal(text, places=places)


@pytest.mark.parametrize(
    ("value", "places", "rounded"),
    [("1.005", 2, "1.01"), ("-1.005", 2, "-1.01"), ("0.123456785", 8, "0.12345679"),
     ("2.5", 0, "3"), ("1.0005", 3, "1.001")],
)  # fmt: skip
def test_round_half_up_at_any_places(value: str, places: int, rounded: str) -> None:
    assert str(round_half_up(D(value), places)) == rounded


@pytest.mark.parametrize(
    ("tax_id", "words"),
    [(KNOWN_GOOD[:-1] + "M", "fails its check character (expected 'L'"),
     (KNOWN_GOOD.lower(), "lower-case letters (l)"), (KNOWN_GOOD[:-1] + "I", "never uses (I)"),
     (KNOWN_GOOD[:2] + "A" + KNOWN_GOOD[3:], "region code"), (KNOWN_GOOD + "0", "has 19")],
)  # fmt: skip
def test_tax_id_problems_past_the_fast_path(tax_id: str, words: str) -> None:
    problem = tax_id_problem(tax_id)
    assert problem is not None
    assert words in problem
    assert KNOWN_GOOD not in problem


def test_check_character_refuses_a_character_outside_the_alphabet() -> None:
    with pytest.raises(ValueError, match="outside the code alphabet") as raised:
        check_character(KNOWN_GOOD[:16] + "O")
    assert raised.value.__cause__ is None
