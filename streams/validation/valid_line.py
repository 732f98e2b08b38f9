"""A valid invoice line, recognised in one pass.

Nearly every line of nearly every invoice is valid. ``valid_line_money`` settles such a
line with none of the calls that exist to word an error (~3 µs of ~7 a line, measured in
docs/performance-history.md, item 41) and answers None for anything else, which
``streams.validation.validate`` then checks rule by rule and words. It may leave a valid
line to that check (a rate spelled "0.060"); it must never pass one the check would
refuse: tests/unit/test_validation_fast_paths.py holds the two to one answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from streams.validation.item_name import has_item_name_form
from streams.validation.money import (
    LineMoney,
    line_amount_problem,
    line_tax_problem,
    plain_money,
    plain_quantity,
)

__all__ = ["ITEM_NAME_MAX", "TAX_CODE", "TAX_EXEMPTIONS", "Kind", "valid_line_money"]

ITEM_NAME_MAX = 90
TAX_EXEMPTIONS = frozenset({"exempt", "non_taxable"})
#: the 19-digit tax classification code
TAX_CODE = re.compile(r"[0-9]{19}")
_ZERO = Decimal(0)

Kind = Literal["blue", "red"]


def valid_line_money(
    line: Mapping[str, Any], kind: Kind | None, rate_by_text: Mapping[str, Decimal]
) -> LineMoney | None:
    """The line's money when it breaks none of the line rules, else None with nothing
    reported. ``kind`` None (the invoice's kind is itself wrong) skips the sign rules,
    as the full check does; ``rate_by_text`` is ``DomainRules.rate_by_text``."""
    get = line.get
    name = get("item_name")
    # The *category*name form implies a name that is not blank.
    if type(name) is not str or len(name) > ITEM_NAME_MAX or not has_item_name_form(name):
        return None
    tax_code = get("tax_code")
    if type(tax_code) is not str or TAX_CODE.fullmatch(tax_code) is None:
        return None
    rate_text = get("tax_rate")
    rate = rate_by_text.get(rate_text) if type(rate_text) is str else None
    amount = plain_money(get("amount"))
    tax_amount = plain_money(get("tax_amount"))
    if rate is None or amount is None or tax_amount is None:
        return None
    exemption = get("tax_exemption")
    if exemption is not None and (
        rate != _ZERO or type(exemption) is not str or exemption not in TAX_EXEMPTIONS
    ):
        return None
    quantity = unit_price = None
    if (value := get("quantity")) is not None and (quantity := plain_quantity(value)) is None:
        return None
    if (value := get("unit_price")) is not None and (
        (unit_price := plain_quantity(value)) is None or unit_price <= _ZERO
    ):
        return None
    taxed = rate != _ZERO
    # Blue lines carry positive amounts and red (credit) ones negative; a 0-rate line's
    # tax is 0.00 whatever the kind.
    if kind == "blue":
        if (
            amount <= _ZERO
            or (quantity is not None and quantity <= _ZERO)
            or (taxed and tax_amount <= _ZERO)
        ):
            return None
    elif kind == "red" and (
        amount >= _ZERO
        or (quantity is not None and quantity >= _ZERO)
        or (taxed and tax_amount >= _ZERO)
    ):
        return None
    if taxed:
        if line_tax_problem(amount, rate, tax_amount) is not None:
            return None
    elif tax_amount != _ZERO:
        return None
    if (
        quantity is not None
        and unit_price is not None
        and line_amount_problem(quantity, unit_price, amount) is not None
    ):
        return None
    return LineMoney(amount=amount, tax_rate=rate, tax_amount=tax_amount)
