"""The sandbox platform's own checks: 422 rejections that follow from the data alone.

Deliberately a small subset of ``invoice-domain.md``: enough for every 422 code of the
contract to be reachable from an invoice, never from chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from streams.validation.taxid import tax_id_problem

__all__ = ["Originals", "Rejection", "check", "money"]

CENT = Decimal("0.01")
#: the largest gap allowed between a line's tax and round(amount × rate)
LINE_TAX_TOLERANCE = Decimal("0.06")


@dataclass(frozen=True)
class Rejection:
    """A 422 answer: one of the contract's codes, a sentence, the offending field."""

    code: str
    message: str
    field: str | None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}


class Originals(Protocol):
    """What the red-invoice rules need to know about stored invoices."""

    def original(self, seller_tax_id: str, invoice_number: str) -> Mapping[str, Any] | None: ...

    def credited(self, seller_tax_id: str, invoice_number: str) -> Decimal:
        """Sum of the absolute totals of red invoices already stored against it."""
        ...


class _Reject(Exception):
    def __init__(self, code: str, message: str, field: str | None) -> None:
        super().__init__(message)
        self.rejection = Rejection(code, message, field)


def _invalid(field: str | None, message: str) -> _Reject:
    return _Reject("INVALID_FIELD", message, field)


def _object(parent: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, Mapping):
        raise _invalid(path, f"{path} is required and must be an object.")
    return value


def _text(parent: Mapping[str, Any], name: str, path: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _invalid(path, f"{path} is required and must be a non-empty string.")
    return value


def money(value: object) -> Decimal | None:
    """A finite decimal string with at most two places, else None."""
    if not isinstance(value, str):
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount != amount.quantize(CENT):
        return None
    return amount


def _money(parent: Mapping[str, Any], name: str, path: str) -> Decimal:
    amount = money(parent.get(name))
    if amount is None:
        raise _invalid(path, f"{path} must be a decimal string with at most two places.")
    return amount


def _rate(line: Mapping[str, Any], path: str) -> Decimal:
    value = line.get("tax_rate")
    try:
        rate = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite() or not 0 <= rate < 1:
        raise _invalid(path, f'{path} must be a decimal string such as "0.13".')
    return rate


def _tax_id(value: str, path: str) -> None:
    problem = tax_id_problem(value)
    if problem is not None:
        raise _Reject("INVALID_TAX_ID", problem, path)


def _check(invoice: object, originals: Originals) -> None:
    if not isinstance(invoice, Mapping):
        raise _invalid(None, "The body must be the invoice as a JSON object.")
    _text(invoice, "invoice_number", "invoice_number")
    seller = _object(invoice, "seller", "seller")
    seller_tax_id = _text(seller, "tax_id", "seller.tax_id")
    buyer = _object(invoice, "buyer", "buyer")
    kind = invoice.get("kind")
    if kind not in ("blue", "red"):
        raise _invalid("kind", 'kind must be "blue" or "red".')
    if invoice.get("invoice_type") not in ("special", "general"):
        raise _invalid("invoice_type", 'invoice_type must be "special" or "general".')
    try:
        date.fromisoformat(_text(invoice, "issue_date", "issue_date"))
    except ValueError:
        raise _invalid("issue_date", "issue_date must be a date, YYYY-MM-DD.") from None
    lines = invoice.get("lines")
    if not isinstance(lines, list) or not lines:
        raise _invalid("lines", "lines must be a non-empty list.")

    _tax_id(seller_tax_id, "seller.tax_id")
    buyer_tax_id = buyer.get("tax_id")
    if buyer_tax_id is not None:
        if not isinstance(buyer_tax_id, str):
            raise _invalid("buyer.tax_id", "buyer.tax_id must be a string or null.")
        _tax_id(buyer_tax_id, "buyer.tax_id")
    elif invoice.get("invoice_type") == "special":
        raise _invalid("buyer.tax_id", "A special VAT invoice needs the buyer's tax id.")

    amounts, taxes = Decimal(0), Decimal(0)
    for i, line in enumerate(lines):
        path = f"lines[{i}]"
        if not isinstance(line, Mapping):
            raise _invalid(path, f"{path} must be an object.")
        amount = _money(line, "amount", f"{path}.amount")
        tax = _money(line, "tax_amount", f"{path}.tax_amount")
        expected = (amount * _rate(line, f"{path}.tax_rate")).quantize(CENT, ROUND_HALF_UP)
        if abs(tax - expected) > LINE_TAX_TOLERANCE:
            raise _Reject(
                "AMOUNT_MISMATCH",
                f"{path}.tax_amount is {tax}, but amount × tax_rate is {expected}.",
                f"{path}.tax_amount",
            )
        amounts += amount
        taxes += tax
    total_amount = _money(invoice, "total_amount", "total_amount")
    total_tax = _money(invoice, "total_tax", "total_tax")
    total = _money(invoice, "total_with_tax", "total_with_tax")
    for name, stated, computed in (
        ("total_amount", total_amount, amounts),
        ("total_tax", total_tax, taxes),
        ("total_with_tax", total, total_amount + total_tax),
    ):
        if stated != computed:
            raise _Reject(
                "AMOUNT_MISMATCH",
                f"{name} is {stated}, but the invoice adds up to {computed}.",
                name,
            )

    if kind == "red":
        number = invoice.get("original_invoice_number")
        if not isinstance(number, str) or not number:
            raise _invalid(
                "original_invoice_number", "A red invoice must name the invoice it reverses."
            )
        original = originals.original(seller_tax_id, number)
        if original is None:
            raise _Reject(
                "ORIGINAL_NOT_FOUND",
                f"No invoice {number} of seller {seller_tax_id} is stored.",
                "original_invoice_number",
            )
        original_total = money(original.get("total_with_tax")) or Decimal(0)
        remaining = original_total - originals.credited(seller_tax_id, number)
        if abs(total) > remaining:
            raise _Reject(
                "RED_EXCEEDS_ORIGINAL",
                f"This red invoice reverses {abs(total)}, "
                f"but only {remaining} of invoice {number} remains.",
                "total_with_tax",
            )


def check(invoice: object, originals: Originals) -> Rejection | None:
    """The first rule ``invoice`` breaks, or None when the platform would store it."""
    try:
        _check(invoice, originals)
    except _Reject as reject:
        return reject.rejection
    return None
