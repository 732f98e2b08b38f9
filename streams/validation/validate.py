"""Every rule of invoice-domain.md that one invoice can be checked against on its own.

``validate_invoice`` runs after the schema, so types are normally right; it still
checks each value it reads and reports a ``Violation`` rather than raising, because
one odd value must fail one invoice, not the worker. Rules that need the ledger are
checked by ``streams.processor.pipeline``: a red invoice waits until its original (the
same seller's, by key) is confirmed, and is failed as ``VALIDATION`` on
``invoice.total_with_tax`` if it exceeds what remains of that original after the
confirmed red invoices against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeGuard

from streams.validation.invoice_number import (
    invoice_number_format_problem,
    invoice_number_problems,
)
from streams.validation.item_name import has_item_name_form
from streams.validation.money import (
    DecimalFormatError,
    LineMoney,
    line_amount_problem,
    line_tax_problem,
    parse_money,
    parse_quantity,
    totals_problems,
)
from streams.validation.rules import DomainRules
from streams.validation.taxid import tax_id_problem
from streams.validation.valid_line import (
    ITEM_NAME_MAX,
    TAX_CODE,
    TAX_EXEMPTIONS,
    Kind,
    valid_line_money,
)

__all__ = ["Violation", "validate_invoice"]

PARTY_NAME_MAX = 100
CURRENCY = "CNY"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``field`` is a path like ``invoice.lines[0].tax_amount``."""

    field: str
    message: str


def validate_invoice(
    invoice: Mapping[str, Any], rules: DomainRules, *, today: date
) -> list[Violation]:
    """All violations of ``invoice`` (the ``invoice`` object of an ``invoice.issued``
    event), in field order; empty when it may be sent. ``today`` is the Beijing date."""
    if not _is_object(invoice):
        return [Violation("invoice", "The invoice must be a JSON object.")]
    return _InvoiceCheck(invoice, rules, today).run()


class _InvoiceCheck:
    def __init__(self, invoice: Mapping[str, Any], rules: DomainRules, today: date) -> None:
        self.invoice = invoice
        self.rules = rules
        self.today = today
        self.violations: list[Violation] = []

    def add(self, field: str, message: str, leaf: str = "") -> None:
        # The path of a field's leaf is built only here, when something is wrong with it.
        self.violations.append(Violation(f"{field}.{leaf}" if leaf else field, message))

    def run(self) -> list[Violation]:
        kind = self._kind()
        issue_date = self._issue_date()
        self._invoice_number(issue_date)
        self._seller()
        self._buyer()
        complete, money_lines = self._lines(kind)
        self._totals(kind, money_lines if complete else None)
        self._currency()
        self._original(kind)
        return self.violations

    # --- identity, kind, dates -----------------------------------------------------

    def _kind(self) -> Kind | None:
        kind = self.invoice.get("kind")
        if kind == "blue":
            return "blue"
        if kind == "red":
            return "red"
        self.add("invoice.kind", f'kind must be "blue" or "red", got {_show(kind)}.')
        return None

    def _issue_date(self) -> date | None:
        field = "invoice.issue_date"
        value = self.invoice.get("issue_date")
        if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
            self.add(field, f"issue_date must be a date like 2026-11-20, got {_show(value)}.")
            return None
        try:
            issued = date.fromisoformat(value)
        except ValueError:
            self.add(field, f"issue_date {value} is not a real calendar date.")
            return None
        if issued > self.today:
            self.add(
                field,
                f"issue_date {value} is in the future; today in Beijing is "
                f"{self.today.isoformat()}.",
            )
        elif (self.today - issued).days > self.rules.max_issue_age_days:
            self.add(
                field,
                f"issue_date {value} is {(self.today - issued).days} days ago; invoices older "
                f"than {self.rules.max_issue_age_days} days are not accepted.",
            )
        return issued

    def _invoice_number(self, issue_date: date | None) -> None:
        field = "invoice.invoice_number"
        number = self.invoice.get("invoice_number")
        if not isinstance(number, str):
            self.add(field, f"invoice_number must be a string of digits, got {_show(number)}.")
            return
        # An unreadable issue_date (None) is reported by itself; the year check then
        # has nothing to compare against. A future or too-old date is still compared.
        for problem in invoice_number_problems(
            number,
            issue_date=issue_date,
            province_codes=self.rules.province_codes,
            january_grace_days=self.rules.january_grace_days,
        ):
            self.add(field, problem)

    # --- parties -------------------------------------------------------------------

    def _seller(self) -> None:
        seller = self.invoice.get("seller")
        if not _is_object(seller):
            self.add("invoice.seller", "seller must be an object with tax_id and name.")
            return
        tax_id = seller.get("tax_id")
        if tax_id is None:
            self.add("invoice.seller.tax_id", "The seller's tax id is required.")
        else:
            self._tax_id("invoice.seller.tax_id", tax_id)
        self._name("invoice.seller", "name", seller.get("name"), "seller name", PARTY_NAME_MAX)

    def _buyer(self) -> None:
        buyer = self.invoice.get("buyer")
        if not _is_object(buyer):
            self.add("invoice.buyer", "buyer must be an object with at least a name.")
            return
        field = "invoice.buyer.tax_id"
        natural = buyer.get("natural_person", False)
        if not isinstance(natural, bool):
            self.add("invoice.buyer.natural_person", "natural_person must be true or false.")
            natural = False
        tax_id = buyer.get("tax_id")
        special = self.invoice.get("invoice_type") == "special"
        if natural and tax_id is not None:
            self.add(
                field, "A natural person buyer has no tax id: send buyer.tax_id as null or leave "
                "it out, or set natural_person to false for a company.",
            )  # fmt: skip
        elif tax_id is None and special:
            self.add(
                field, "A special invoice needs the buyer's tax id; a natural person can only "
                "receive a general invoice.",
            )  # fmt: skip
        elif tax_id is not None:
            self._tax_id(field, tax_id)
        self._name("invoice.buyer", "name", buyer.get("name"), "buyer name", PARTY_NAME_MAX)

    def _tax_id(self, field: str, value: object) -> None:
        if not isinstance(value, str):
            self.add(field, f"A tax id must be a string, got {_show(value)}.")
            return
        problem = tax_id_problem(value)
        if problem is not None:
            self.add(field, problem)

    def _name(self, parent: str, leaf: str, value: object, label: str, limit: int) -> str | None:
        if not isinstance(value, str):
            self.add(parent, f"The {label} must be text, got {_show(value)}.", leaf)
            return None
        if not value.strip():
            self.add(parent, f"The {label} is empty.", leaf)
            return None
        if len(value) > limit:
            self.add(
                parent,
                f"The {label} is {len(value)} characters long; at most {limit} allowed.",
                leaf,
            )
        return value

    # --- lines ---------------------------------------------------------------------

    def _lines(self, kind: Kind | None) -> tuple[bool, list[LineMoney]]:
        """Checks every line; returns whether all lines' money parsed, and that money."""
        lines = self.invoice.get("lines")
        if not isinstance(lines, (list, Sequence)) or isinstance(lines, str | bytes):
            self.add("invoice.lines", "lines must be a list of invoice lines.")
            return False, []
        if not lines:
            self.add("invoice.lines", "An invoice needs at least one line.")
            return False, []
        if len(lines) > self.rules.max_lines:
            self.add(
                "invoice.lines",
                f"The invoice has {len(lines)} lines; at most {self.rules.max_lines} are "
                "allowed, so split it into several invoices.",
            )
        complete = True
        money: list[LineMoney] = []
        for index, line in enumerate(lines):
            parsed = self._line(f"invoice.lines[{index}]", line, kind)
            if parsed is None:
                complete = False
            else:
                money.append(parsed)
        return complete, money

    def _line(self, path: str, line: object, kind: Kind | None) -> LineMoney | None:
        if not _is_object(line):
            self.add(path, "Each line must be an object.")
            return None
        money = valid_line_money(line, kind, self.rules.rate_by_text)
        return money if money is not None else self._checked_line(path, line, kind)

    def _checked_line(
        self, path: str, line: Mapping[str, Any], kind: Kind | None
    ) -> LineMoney | None:
        self._item_name(path, line.get("item_name"))
        tax_code = line.get("tax_code")
        if not isinstance(tax_code, str) or TAX_CODE.fullmatch(tax_code) is None:
            self.add(
                path,
                f"tax_code must be the 19-digit tax classification code, got {_show(tax_code)}.",
                "tax_code",
            )
        amount = self._decimal(path, "amount", line.get("amount"), parse_money)
        tax_amount = self._decimal(path, "tax_amount", line.get("tax_amount"), parse_money)
        rate = self._tax_rate(path, line.get("tax_rate"))
        self._exemption(path, line, rate)
        quantity = unit_price = None
        if (value := line.get("quantity")) is not None:
            quantity = self._decimal(path, "quantity", value, parse_quantity)
        if (value := line.get("unit_price")) is not None:
            unit_price = self._decimal(path, "unit_price", value, parse_quantity)

        if unit_price is not None and unit_price <= _ZERO:
            self.add(path, f"unit_price must be positive, got {unit_price}.", "unit_price")
        if kind is not None:
            self._sign(path, "quantity", quantity, kind)
            self._sign(path, "amount", amount, kind)
            # 0-rate lines carry 0.00 tax whatever the kind; that is checked with the tax.
            if rate is not None and rate != _ZERO:
                self._sign(path, "tax_amount", tax_amount, kind)
        if amount is not None and tax_amount is not None and rate is not None:
            if rate == _ZERO:
                if tax_amount != _ZERO:
                    self.add(
                        path,
                        f"A 0-rate line carries no tax; tax_amount must be 0.00, got {tax_amount}.",
                        "tax_amount",
                    )
            else:
                problem = line_tax_problem(amount, rate, tax_amount)
                if problem is not None:
                    self.add(path, problem, "tax_amount")
        if quantity is not None and unit_price is not None and amount is not None:
            problem = line_amount_problem(quantity, unit_price, amount)
            if problem is not None:
                self.add(path, problem, "amount")
        if amount is None or tax_amount is None or rate is None:
            return None
        return LineMoney(amount=amount, tax_rate=rate, tax_amount=tax_amount)

    def _sign(
        self, parent: str, leaf: str, value: Decimal | None, kind: Kind, *, zero_ok: bool = False
    ) -> None:
        """Blue invoices carry positive amounts and red (credit) ones negative amounts."""
        if value is None or (zero_ok and value == _ZERO):
            return
        if (value <= _ZERO) if kind == "blue" else (value >= _ZERO):
            word = "positive on a blue" if kind == "blue" else "negative on a red (credit)"
            self.add(parent, f"{leaf} must be {word} invoice, got {value}.", leaf)

    def _item_name(self, path: str, value: object) -> None:
        name = self._name(path, "item_name", value, "item name", ITEM_NAME_MAX)
        if name is not None and not has_item_name_form(name):
            self.add(
                path,
                f"The item name must have the form *category*name, like *信息技术服务*软件维护; "
                f"got {_show(name)}.",
                "item_name",
            )

    def _tax_rate(self, path: str, value: object) -> Decimal | None:
        try:
            rate = parse_quantity(value)
        except DecimalFormatError:
            shown = _show(value)
        else:
            if rate in self.rules.tax_rates:
                return rate
            shown = f"{value}"
        # Only a refused rate needs the list, so a valid line never builds it.
        allowed = ", ".join(f"{r:f}" for r in sorted(self.rules.tax_rates, reverse=True))
        self.add(path, f"tax_rate {shown} is not one of the allowed rates: {allowed}.", "tax_rate")
        return None

    def _exemption(self, path: str, line: Mapping[str, Any], rate: Decimal | None) -> None:
        exemption = line.get("tax_exemption")
        if exemption is None:
            return
        # A list or an object is refused in words too, not hashed into a TypeError.
        if not isinstance(exemption, str) or exemption not in TAX_EXEMPTIONS:
            self.add(path, f'tax_exemption must be "exempt" or "non_taxable", got '
                     f"{_show(exemption)}.", "tax_exemption")  # fmt: skip
        elif rate is not None and rate != _ZERO:
            self.add(path, f"tax_exemption {exemption} only applies to a 0 tax_rate; this "
                     f"line's rate is {rate}. Remove the exemption or set the rate to 0.",
                     "tax_exemption")  # fmt: skip

    def _decimal(
        self, parent: str, leaf: str, value: object, parse: Callable[[object], Decimal]
    ) -> Decimal | None:
        if value is None:
            self.add(parent, f"{leaf} is missing.", leaf)
            return None
        try:
            return parse(value)
        except DecimalFormatError as exc:
            self.add(parent, f"{leaf} {exc}", leaf)
            return None

    # --- totals, currency, original ------------------------------------------------

    def _totals(self, kind: Kind | None, lines: list[LineMoney] | None) -> None:
        totals: dict[str, Decimal | None] = {}
        for name in ("total_amount", "total_tax", "total_with_tax"):
            totals[name] = self._decimal("invoice", name, self.invoice.get(name), parse_money)
        if kind is not None:
            for name, value in totals.items():
                # total_tax is 0.00 when every line is 0-rate; the sums check the rest.
                self._sign("invoice", name, value, kind, zero_ok=name == "total_tax")
        if lines is None:
            return  # a line's money did not parse; the line's own violation says so
        for name, problem in totals_problems(lines, **totals):
            self.add("invoice", problem, name)

    def _currency(self) -> None:
        currency = self.invoice.get("currency")
        if currency != CURRENCY:
            self.add("invoice.currency", f"currency must be {CURRENCY}, got {_show(currency)}.")

    def _original(self, kind: Kind | None) -> None:
        field = "invoice.original_invoice_number"
        original = self.invoice.get("original_invoice_number")
        if kind == "blue" and original is not None:
            self.add(field, "A blue invoice reverses nothing: original_invoice_number must be "
                     "null. Use kind red for a credit invoice.")  # fmt: skip
        elif kind == "red":
            if original is None:
                self.add(field, "A red (credit) invoice must name the blue invoice it reverses "
                         "in original_invoice_number.")  # fmt: skip
            elif not isinstance(original, str):
                self.add(field, f"original_invoice_number must be a string of digits, "
                         f"got {_show(original)}.")  # fmt: skip
            else:
                problem = invoice_number_format_problem(original)
                if problem is not None:
                    self.add(field, problem)
                elif original == self.invoice.get("invoice_number"):
                    self.add(field, "A red invoice cannot reverse itself: "
                             "original_invoice_number is its own number.")  # fmt: skip


def _show(value: object, limit: int = 40) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_object(value: object) -> TypeGuard[Mapping[str, Any]]:
    # Decoded JSON objects are dicts, and an exact type match spares the slow ABC check.
    return isinstance(value, (dict, Mapping))
