from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.validation.money import (
    LINE_TAX_TOLERANCE,
    MONEY_PLACES,
    QUANTITY_PLACES,
    DecimalFormatError,
    LineMoney,
    expected_line_tax,
    line_amount_problem,
    line_tax_problem,
    parse_decimal,
    round_half_up,
    totals_problems,
)

D = Decimal
RATES = [D(r) for r in ("0.13", "0.09", "0.06", "0.05", "0.03", "0.01", "0")]
amounts = st.decimals(min_value=D("-99999999.99"), max_value=D("99999999.99"), places=2)
positive_amounts = st.decimals(min_value=D("0.01"), max_value=D("99999999.99"), places=2)
rates = st.sampled_from(RATES)


def line(amount: str, rate: str, tax: str) -> LineMoney:
    return LineMoney(amount=D(amount), tax_rate=D(rate), tax_amount=D(tax))


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "places", "value"),
    [("0", 2, D(0)), ("60.00", 2, D("60.00")), ("-9999.98", 2, D("-9999.98")),
     ("1.12345678", 8, D("1.12345678")), ("007", 2, D(7))],
)  # fmt: skip
def test_parse_accepts_plain_decimals(text: str, places: int, value: Decimal) -> None:
    parsed = parse_decimal(text, places=places)
    assert parsed == value
    assert isinstance(parsed, Decimal)


@pytest.mark.parametrize(
    ("value", "words"),
    [("60.001", "3 decimal places"), ("1e3", "not a decimal"), ("NaN", "not a decimal"),
     ("Infinity", "not a decimal"), (" 1.00", "not a decimal"), ("1.", "not a decimal"),
     (".5", "not a decimal"), ("+1", "not a decimal"), ("１", "not a decimal"),
     ("1" * 21, "too large"), (60.0, "decimal string"), (None, "decimal string")],
)  # fmt: skip
def test_parse_rejects(value: object, words: str) -> None:
    with pytest.raises(DecimalFormatError, match=words):
        parse_decimal(value, places=MONEY_PLACES)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=QUANTITY_PLACES,
                   min_value=-(10**12), max_value=10**12))  # fmt: skip
def test_parse_round_trips(value: Decimal) -> None:
    assert parse_decimal(f"{value:f}", places=QUANTITY_PLACES) == value


# --- rounding and per-line rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rounded"),
    [("0.005", "0.01"), ("0.0049", "0.00"), ("-0.005", "-0.01"), ("2.675", "2.68"),
     ("1299.9974", "1300.00")],
)  # fmt: skip
def test_round_half_up(value: str, rounded: str) -> None:
    assert round_half_up(D(value)) == D(rounded)


@given(amounts, rates)
def test_red_line_tax_mirrors_blue(amount: Decimal, rate: Decimal) -> None:
    assert expected_line_tax(-amount, rate) == -expected_line_tax(amount, rate)


@given(amounts, rates, st.integers(-6, 6))
def test_tax_within_six_cents_passes(amount: Decimal, rate: Decimal, cents: int) -> None:
    tax = expected_line_tax(amount, rate) + D(cents) / 100
    assert line_tax_problem(amount, rate, tax) is None


@given(amounts, rates, st.integers(7, 10**6), st.sampled_from([1, -1]))
def test_tax_beyond_six_cents_fails(amount: Decimal, rate: Decimal, cents: int, sign: int) -> None:
    tax = expected_line_tax(amount, rate) + sign * D(cents) / 100
    problem = line_tax_problem(amount, rate, tax)
    assert problem is not None
    assert str(LINE_TAX_TOLERANCE) in problem


def test_line_tax_boundary() -> None:
    assert line_tax_problem(D("1000.00"), D("0.06"), D("60.06")) is None
    assert line_tax_problem(D("1000.00"), D("0.06"), D("59.94")) is None
    assert line_tax_problem(D("1000.00"), D("0.06"), D("60.07")) is not None


quantities = st.decimals(min_value=D("0.00000001"), max_value=D(10**6), places=QUANTITY_PLACES)
prices = st.decimals(min_value=D("0.00000001"), max_value=D(10**6), places=QUANTITY_PLACES)


@given(quantities, prices)
def test_rounded_product_is_within_a_cent(quantity: Decimal, price: Decimal) -> None:
    amount = round_half_up(quantity * price)
    assert line_amount_problem(quantity, price, amount) is None
    assert line_amount_problem(-quantity, price, -amount) is None


@given(quantities, prices, st.integers(2, 10**6))
def test_amount_off_by_more_than_a_cent_fails(
    quantity: Decimal, price: Decimal, cents: int
) -> None:
    exact = round_half_up(quantity * price)
    # Rounding already moved up to half a cent; two cents more is always beyond 0.01.
    assert line_amount_problem(quantity, price, exact + D(cents) / 100) is not None


def test_amount_tolerance_is_inclusive() -> None:
    assert line_amount_problem(D(3), D("0.335"), D("1.00")) is None  # 1.005 vs 1.00
    assert line_amount_problem(D(1), D("100.00"), D("100.01")) is None
    assert line_amount_problem(D(1), D("100.00"), D("100.02")) is not None


def test_products_beyond_the_default_precision_stay_exact() -> None:
    # 29 significant digits: the default 28-digit context would round the product.
    quantity, price = D(9), D("12345678901234567890.12345679")
    assert line_amount_problem(quantity, price, D("111111110111111111011.11")) is None
    assert line_amount_problem(quantity, price, D("111111110111111111011.10")) is not None


# --- totals ----------------------------------------------------------------------------


@given(st.lists(st.tuples(positive_amounts, rates), min_size=1, max_size=50))
def test_consistent_totals_pass(rows: list[tuple[Decimal, Decimal]]) -> None:
    lines = [LineMoney(a, r, expected_line_tax(a, r)) for a, r in rows]
    total_amount = sum((x.amount for x in lines), D(0))
    total_tax = sum((x.tax_amount for x in lines), D(0))
    assert (
        totals_problems(
            lines,
            total_amount=total_amount,
            total_tax=total_tax,
            total_with_tax=total_amount + total_tax,
        )
        == []
    )


@given(st.lists(st.tuples(positive_amounts, rates), min_size=1, max_size=20), st.integers(1, 999))
def test_totals_off_by_any_cent_fail(rows: list[tuple[Decimal, Decimal]], cents: int) -> None:
    lines = [LineMoney(a, r, expected_line_tax(a, r)) for a, r in rows]
    total_amount = sum((x.amount for x in lines), D(0)) + D(cents) / 100
    total_tax = sum((x.tax_amount for x in lines), D(0))
    fields = [f for f, _ in totals_problems(lines, total_amount=total_amount,
              total_tax=total_tax, total_with_tax=total_amount + total_tax)]  # fmt: skip
    assert fields == ["total_amount"]


def test_total_with_tax_must_be_exact() -> None:
    lines = [line("1000.00", "0.06", "60.00")]
    problems = totals_problems(
        lines, total_amount=D("1000.00"), total_tax=D("60.00"), total_with_tax=D("1060.01")
    )
    assert [f for f, _ in problems] == ["total_with_tax"]


def test_total_tax_drift_allowed_up_to_1_27() -> None:
    # 127 lines each rounded up by the full 0.01 still pass; one more cent of drift fails.
    lines = [line("1.00", "0.06", "0.07")] * 127  # exact tax 0.06, so 0.01 drift each
    tax = D("8.89")
    assert (
        totals_problems(lines, total_amount=D("127.00"), total_tax=tax, total_with_tax=D("135.89"))
        == []
    )
    lines = [*lines, line("1.00", "0.06", "0.07")]
    problems = totals_problems(
        lines, total_amount=D("128.00"), total_tax=D("8.96"), total_with_tax=D("136.96")
    )
    assert [f for f, _ in problems] == ["total_tax"]
    assert "1.27" in problems[0][1]


def test_unparsed_totals_are_skipped() -> None:
    lines = [line("1000.00", "0.06", "60.00")]
    assert totals_problems(lines, total_amount=None, total_tax=None, total_with_tax=None) == []
