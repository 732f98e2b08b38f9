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


# Values each line field is spoiled with, one field at a time: wrong types, blanks,
# signs, places, spellings the fast path leaves to the full check, and the edges of
# the tolerances.
_SPOILERS: dict[str, list[object]] = {
    "item_name": [None, 7, "", "   ", "软件维护", "**软件维护", "*信息技术服务*", "*a*" + "b" * 88,
                  "*a*" + "b" * 87, ["*a*b"]],
    "tax_code": [None, 3040201000000000000, "304020100000000000", "30402010000000000000",
                 "３０４０２０１０００００００００００００", ""],
    "quantity": [None, "0", "-1", "1.123456789", "1e2", 1, "", " 1", "+1", "1.12345678"],
    "unit_price": [None, "0", "-1000.00", "1000.000000001", "1000", "1_000.00", 1000.0],
    "amount": [None, "1000.01", "999.99", "1000.02", "-1000.00", "1000.001", "1000", "1e3",
               1000, "0.00", "NaN", "９９"],
    "tax_rate": [None, "0.060", "0.07", "0", "0.00", "-0.06", 0.06, "0.06 ", "abc", ["0.06"]],
    "tax_amount": [None, "60.06", "60.07", "59.94", "59.93", "0.00", "-60.00", "60", "60.000"],
    "tax_exemption": [None, "exempt", "non_taxable", "free", 1, ["exempt"]],
}  # fmt: skip


def _spoiled_lines() -> list[tuple[dict[str, object], str | None]]:
    from tests.unit.invoice_samples import blue_invoice, red_invoice

    cases: list[tuple[dict[str, object], str | None]] = []
    for invoice in (blue_invoice(), red_invoice()):
        for line in invoice["lines"]:
            for kind in (invoice["kind"], None, "red" if invoice["kind"] == "blue" else "blue"):
                cases.append((dict(line), kind))
                for field, values in _SPOILERS.items():
                    for value in values:
                        spoiled = dict(line)
                        if value is None:
                            spoiled.pop(field, None)
                        else:
                            spoiled[field] = value
                        cases.append((spoiled, kind))
                cases.append(({**line, "tax_rate": "0", "tax_amount": "0.00"}, kind))
                cases.append(({**line, "tax_rate": "0", "tax_amount": "0.00",
                               "tax_exemption": "exempt"}, kind))  # fmt: skip
    return cases


def test_a_line_the_fast_path_settles_is_one_the_full_check_passes() -> None:
    """``valid_line_money`` answers for a line only when the full check finds nothing
    wrong with it, and with the same money; anything else (a valid rate spelled "0.060"
    among it) it leaves to the full check."""
    from streams.validation.rules import DomainRules
    from streams.validation.valid_line import valid_line_money
    from streams.validation.validate import _InvoiceCheck
    from tests.unit.invoice_samples import TODAY, blue_invoice

    rules = DomainRules()
    settled = worded = 0
    for line, kind in _spoiled_lines():
        check = _InvoiceCheck(blue_invoice(), rules, TODAY)
        money = check._checked_line("invoice.lines[0]", line, kind)  # type: ignore[arg-type]
        fast = valid_line_money(line, kind, rules.rate_by_text)  # type: ignore[arg-type]
        if fast is not None:
            assert not check.violations, (line, kind, check.violations)
            assert fast == money, (line, kind)
            settled += 1
        elif check.violations:
            worded += 1
    # Both ways are taken, many times: the spoilers reach past the fast path.
    assert settled > 20
    assert worded > 200


def test_a_rate_spelled_otherwise_still_passes() -> None:
    from streams.validation.rules import DomainRules
    from streams.validation.validate import validate_invoice
    from tests.unit.invoice_samples import TODAY, blue_invoice

    invoice = blue_invoice()
    invoice["lines"][0]["tax_rate"] = "0.0600"
    assert validate_invoice(invoice, DomainRules(), today=TODAY) == []
    assert DomainRules(tax_rates=frozenset({D("0.123456789"), D("0.06")})).rate_by_text == {
        "0.06": D("0.06")
    }
