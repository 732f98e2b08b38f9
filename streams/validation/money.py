"""Money arithmetic of invoice-domain.md, in ``Decimal`` and never float.

All arithmetic runs in ``EXACT``: its precision exceeds any product or sum of
values ``parse_decimal`` accepts (times a configured tax rate), so comparisons
against the tolerances are exact and do not depend on the thread's default
context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import NamedTuple

__all__ = [
    "EXACT",
    "LINE_AMOUNT_TOLERANCE",
    "LINE_TAX_TOLERANCE",
    "MAX_INTEGER_DIGITS",
    "MONEY_PLACES",
    "QUANTITY_PLACES",
    "TOTAL_TAX_TOLERANCE",
    "DecimalFormatError",
    "LineMoney",
    "expected_line_tax",
    "line_amount_problem",
    "line_tax_problem",
    "parse_decimal",
    "parse_money",
    "parse_quantity",
    "plain_money",
    "plain_quantity",
    "round_half_up",
    "totals_problems",
]

MONEY_PLACES = 2
QUANTITY_PLACES = 8
#: |tax_amount - round(amount × rate, 2)| allowed per line
LINE_TAX_TOLERANCE = Decimal("0.06")
#: |quantity × unit_price - amount| allowed per line, inclusive
LINE_AMOUNT_TOLERANCE = Decimal("0.01")
#: |total_tax - Σ amount × rate| allowed over the whole invoice
TOTAL_TAX_TOLERANCE = Decimal("1.27")
# Far beyond any real invoice (10^20 yuan), and the bound that lets EXACT be exact.
MAX_INTEGER_DIGITS = 20
# A product has at most 2 × (20 + 8) digits; sums of up to millions of lines add a few.
EXACT = Context(prec=80, rounding=ROUND_HALF_UP)

_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
# One match settles the common case: at most 20 integer digits and few enough places
# need none of the checks below, which exist to word the error.
_PLAIN_DECIMAL = {
    places: re.compile(rf"-?[0-9]{{1,{MAX_INTEGER_DIGITS}}}(?:\.[0-9]{{1,{places}}})?")
    for places in (MONEY_PLACES, QUANTITY_PLACES)
}
# Building a quantum costs as much as the quantize itself.
_QUANTA = {places: Decimal(1).scaleb(-places) for places in (MONEY_PLACES, QUANTITY_PLACES)}


class DecimalFormatError(ValueError):
    """A value is not a decimal string the rules accept; the message is a sentence."""


def parse_decimal(value: object, *, places: int) -> Decimal:
    """``value`` as a ``Decimal`` if it is a plain decimal string with at most
    ``places`` decimal places, else ``DecimalFormatError``."""
    if not isinstance(value, str):
        raise DecimalFormatError(f'must be a decimal string like "12.34", got {_json_type(value)}.')
    plain = _PLAIN_DECIMAL.get(places)
    if plain is not None and plain.fullmatch(value) is not None:
        return Decimal(value)
    match = _DECIMAL.fullmatch(value)
    if match is None:
        raise DecimalFormatError(f'{_shorten(value)!r} is not a decimal number like "12.34".')
    _, integer, fraction = match.groups()
    if fraction is not None and len(fraction) > places:
        raise DecimalFormatError(
            f"{value!r} has {len(fraction)} decimal places; at most {places} are allowed."
        )
    if len(integer.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise DecimalFormatError(
            f"{_shorten(value)!r} is too large: more than {MAX_INTEGER_DIGITS} digits "
            "before the decimal point."
        )
    return Decimal(value)


def _plain_parser(places: int) -> Callable[[object], Decimal | None]:
    plain = _PLAIN_DECIMAL[places].fullmatch

    def parse_plain(value: object) -> Decimal | None:
        # The common case in one match and one Decimal, with no lookup or keyword on
        # the way: ~15 values an invoice.
        if type(value) is str and plain(value) is not None:
            return Decimal(value)
        return None

    return parse_plain


def _fast_parser(
    places: int, parse_plain: Callable[[object], Decimal | None]
) -> Callable[[object], Decimal]:
    def parse(value: object) -> Decimal:
        parsed = parse_plain(value)
        # Anything but the common case gets parse_decimal's words.
        return parse_decimal(value, places=places) if parsed is None else parsed

    return parse


#: the value of a plain decimal string with at most ``MONEY_PLACES``
#: (``QUANTITY_PLACES``) places and at most ``MAX_INTEGER_DIGITS`` before the point;
#: None for anything else, which ``parse_money`` (``parse_quantity``) accepts or words
plain_money = _plain_parser(MONEY_PLACES)
plain_quantity = _plain_parser(QUANTITY_PLACES)
#: ``parse_decimal`` at ``MONEY_PLACES`` and at ``QUANTITY_PLACES``
parse_money = _fast_parser(MONEY_PLACES, plain_money)
parse_quantity = _fast_parser(QUANTITY_PLACES, plain_quantity)


def round_half_up(value: Decimal, places: int = MONEY_PLACES) -> Decimal:
    """Commercial rounding: halves away from zero, so a red line mirrors its blue one."""
    quantum = _QUANTA.get(places)
    if quantum is None:
        quantum = Decimal(1).scaleb(-places)
    return value.quantize(quantum, rounding=ROUND_HALF_UP, context=EXACT)


def expected_line_tax(amount: Decimal, tax_rate: Decimal) -> Decimal:
    """``round(amount × tax_rate, 2)``, half-up."""
    return round_half_up(EXACT.multiply(amount, tax_rate))


def line_tax_problem(amount: Decimal, tax_rate: Decimal, tax_amount: Decimal) -> str | None:
    expected = expected_line_tax(amount, tax_rate)
    difference = abs(EXACT.subtract(tax_amount, expected))
    if difference > LINE_TAX_TOLERANCE:
        return (
            f"tax_amount {tax_amount} is {difference} away from amount × tax_rate = {expected} "
            f"(at most {LINE_TAX_TOLERANCE} allowed); recompute the line's tax."
        )
    return None


def line_amount_problem(quantity: Decimal, unit_price: Decimal, amount: Decimal) -> str | None:
    product = EXACT.multiply(quantity, unit_price)
    difference = abs(EXACT.subtract(product, amount))
    if difference > LINE_AMOUNT_TOLERANCE:
        return (
            f"amount {amount} differs from quantity × unit_price = {product.normalize(EXACT):f} "
            f"by {difference} (at most {LINE_AMOUNT_TOLERANCE} allowed)."
        )
    return None


class LineMoney(NamedTuple):
    """The parsed money fields of one line, as the totals check needs them (a named
    tuple: built for every line of every invoice, at a fifth of a frozen dataclass's
    cost)."""

    amount: Decimal
    tax_rate: Decimal
    tax_amount: Decimal


def totals_problems(
    lines: Iterable[LineMoney],
    *,
    total_amount: Decimal | None,
    total_tax: Decimal | None,
    total_with_tax: Decimal | None,
) -> list[tuple[str, str]]:
    """(field name, sentence) for every totals rule broken; a total given as None
    could not be parsed and is left out of the checks that need it."""
    sum_amount = Decimal(0)
    sum_tax = Decimal(0)
    sum_exact_tax = Decimal(0)
    for line in lines:
        sum_amount = EXACT.add(sum_amount, line.amount)
        sum_tax = EXACT.add(sum_tax, line.tax_amount)
        sum_exact_tax = EXACT.add(sum_exact_tax, EXACT.multiply(line.amount, line.tax_rate))
    problems: list[tuple[str, str]] = []
    if total_amount is not None and total_amount != sum_amount:
        problems.append(
            ("total_amount", f"total_amount {total_amount} is not the sum of line amounts, "
             f"{sum_amount:f}.")
        )  # fmt: skip
    if total_tax is not None and total_tax != sum_tax:
        problems.append(
            ("total_tax", f"total_tax {total_tax} is not the sum of line tax amounts, "
             f"{sum_tax:f}.")
        )  # fmt: skip
    if total_tax is not None:
        difference = abs(EXACT.subtract(total_tax, sum_exact_tax))
        if difference > TOTAL_TAX_TOLERANCE:
            problems.append(
                ("total_tax", f"total_tax {total_tax} is {difference.normalize(EXACT):f} away "
                 f"from the exact tax of the lines, {sum_exact_tax.normalize(EXACT):f} "
                 f"(at most {TOTAL_TAX_TOLERANCE} allowed over the invoice).")
            )  # fmt: skip
    if total_amount is not None and total_tax is not None and total_with_tax is not None:
        expected = EXACT.add(total_amount, total_tax)
        if total_with_tax != expected:
            problems.append(
                ("total_with_tax", f"total_with_tax {total_with_tax} is not total_amount + "
                 f"total_tax = {expected:f}.")
            )  # fmt: skip
    return problems


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}: send it as a string"
    return "a list" if isinstance(value, list) else "an object"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
