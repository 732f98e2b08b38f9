from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

import streams.validation.today as today_module
from streams.settings import Settings
from streams.validation.rules import DomainRules
from streams.validation.today import beijing_today
from streams.validation.validate import Violation, validate_invoice

from .invoice_samples import BLUE_NUMBER, TODAY, blue_invoice, red_invoice

RULES = DomainRules()
Edit = Callable[[dict[str, Any]], None]


def check(
    invoice: dict[str, Any], *, today: date = TODAY, rules: DomainRules = RULES
) -> list[Violation]:
    return validate_invoice(invoice, rules, today=today)


def fields(invoice: dict[str, Any], **kwargs: Any) -> list[str]:
    return [v.field for v in check(invoice, **kwargs)]


def test_valid_blue_and_red_pass() -> None:
    assert check(blue_invoice()) == []
    assert check(red_invoice()) == []


def test_rules_default_to_the_spec_and_match_settings() -> None:
    assert RULES.january_grace_days == 7
    assert RULES.max_issue_age_days == 366
    assert RULES.max_lines == 2000
    assert Decimal("0.13") in RULES.tax_rates
    assert Decimal(0) in RULES.tax_rates
    assert len(RULES.province_codes) == 31
    assert DomainRules.from_settings(Settings()) == RULES


def _set(path: str, value: object) -> Edit:
    def edit(invoice: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = invoice
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()

BLUE_CASES: list[tuple[str, Edit, str]] = [
    ("number too short", _set("invoice_number", "2611200000000001234"), "invoice.invoice_number"),
    ("number wrong year", _set("invoice_number", "25112000000000012345"), "invoice.invoice_number"),
    ("number bad region", _set("invoice_number", "26992000000000012345"), "invoice.invoice_number"),
    ("seller check char", _set("seller.tax_id", "91110108MA01XXXXX0"), "invoice.seller.tax_id"),
    ("seller lower case", _set("seller.tax_id", "91110000600037341l"), "invoice.seller.tax_id"),
    ("seller tax id null", _set("seller.tax_id", None), "invoice.seller.tax_id"),
    ("seller name blank", _set("seller.name", "  "), "invoice.seller.name"),
    ("seller name long", _set("seller.name", "公" * 101), "invoice.seller.name"),
    ("buyer name empty", _set("buyer.name", ""), "invoice.buyer.name"),
    ("natural person with id", _set("buyer.tax_id", "91110000600037341L"), "invoice.buyer.tax_id"),
    ("special without buyer id", _set("invoice_type", "special"), "invoice.buyer.tax_id"),
    (
        "natural_person not bool",
        _set("buyer.natural_person", "yes"),
        "invoice.buyer.natural_person",
    ),
    ("future date", _set("issue_date", "2026-11-21"), "invoice.issue_date"),
    ("not a calendar date", _set("issue_date", "2026-02-30"), "invoice.issue_date"),
    ("kind unknown", _set("kind", "green"), "invoice.kind"),
    ("currency", _set("currency", "USD"), "invoice.currency"),
    ("no lines", _set("lines", []), "invoice.lines"),
    ("item name form", _set("lines.0.item_name", "软件维护"), "invoice.lines[0].item_name"),
    (
        "item name empty category",
        _set("lines.0.item_name", "**软件维护"),
        "invoice.lines[0].item_name",
    ),
    (
        "item name no name",
        _set("lines.0.item_name", "*信息技术服务*"),
        "invoice.lines[0].item_name",
    ),
    (
        "item name long",
        _set("lines.0.item_name", "*服务*" + "维" * 87),
        "invoice.lines[0].item_name",
    ),
    ("item name blank", _set("lines.0.item_name", " "), "invoice.lines[0].item_name"),
    ("tax code short", _set("lines.0.tax_code", "304020100000000000"), "invoice.lines[0].tax_code"),
    (
        "tax code letters",
        _set("lines.0.tax_code", "30402010000000000AB"),
        "invoice.lines[0].tax_code",
    ),
    ("rate not allowed", _set("lines.0.tax_rate", "0.17"), "invoice.lines[0].tax_rate"),
    ("exemption on 6%", _set("lines.0.tax_exemption", "exempt"), "invoice.lines[0].tax_exemption"),
    ("exemption unknown", _set("lines.0.tax_exemption", "free"), "invoice.lines[0].tax_exemption"),
    ("amount places", _set("lines.0.amount", "1000.001"), "invoice.lines[0].amount"),
    ("quantity places", _set("lines.0.quantity", "1.123456789"), "invoice.lines[0].quantity"),
    (
        "unit price not positive",
        _set("lines.0.unit_price", "-1000.00"),
        "invoice.lines[0].unit_price",
    ),
    (
        "original on blue",
        _set("original_invoice_number", BLUE_NUMBER),
        "invoice.original_invoice_number",
    ),
]


@pytest.mark.parametrize(
    ("edit", "field"), [c[1:] for c in BLUE_CASES], ids=[c[0] for c in BLUE_CASES]
)
def test_each_rule_names_its_field(edit: Edit, field: str) -> None:
    invoice = blue_invoice()
    edit(invoice)
    violations = check(invoice)
    assert field in [v.field for v in violations], violations
    assert all(v.message.endswith(".") for v in violations), violations


def test_issue_age_limit_is_inclusive() -> None:
    invoice = blue_invoice()
    invoice["issue_date"] = (TODAY - timedelta(days=366)).isoformat()  # 2025-11-19
    invoice["invoice_number"] = "25112000000000012345"
    assert check(invoice) == []
    invoice["issue_date"] = (TODAY - timedelta(days=367)).isoformat()
    assert fields(invoice) == ["invoice.issue_date"]
    assert check(invoice, rules=DomainRules(max_issue_age_days=400)) == []


def test_number_year_follows_january_grace() -> None:
    invoice = blue_invoice()
    invoice["invoice_number"] = "25112000000000012345"
    invoice["issue_date"] = "2026-01-07"
    assert check(invoice, today=date(2026, 1, 7)) == []
    invoice["issue_date"] = "2026-01-08"
    assert fields(invoice, today=date(2026, 1, 8)) == ["invoice.invoice_number"]


def test_general_buyer_may_have_a_valid_tax_id_or_none() -> None:
    invoice = blue_invoice()
    invoice["buyer"] = {"tax_id": "91110000600037341L", "name": "北京某某集团有限公司"}
    assert check(invoice) == []
    invoice["buyer"] = {"name": "北京某某集团有限公司"}
    assert check(invoice) == []
    invoice["buyer"] = {"tax_id": "91110000600037341X", "name": "北京某某集团有限公司"}
    assert fields(invoice) == ["invoice.buyer.tax_id"]


def test_special_buyer_tax_id_is_checked() -> None:
    invoice = red_invoice()
    invoice["buyer"]["tax_id"] = "91110000600037341l"
    [violation] = check(invoice)
    assert violation.field == "invoice.buyer.tax_id"
    assert "upper case" in violation.message
    assert "91110000600037341l" not in violation.message
    assert "'9111************1l'" in violation.message


@pytest.mark.parametrize("bad", ["91110000600037341X", "9111000060003734IL", "91A10000600037341L"])
def test_buyer_tax_id_violations_carry_the_id_masked(bad: str) -> None:
    invoice = blue_invoice()
    invoice["buyer"] = {"tax_id": bad, "name": "北京某某集团有限公司"}
    [violation] = check(invoice)
    assert violation.field == "invoice.buyer.tax_id"
    assert bad not in violation.message and f"{bad[:4]}{'*' * 12}{bad[-2:]}" in violation.message


def test_line_tax_and_quantity_arithmetic() -> None:
    invoice = blue_invoice()
    invoice["lines"][0]["tax_amount"] = "60.07"
    invoice["total_tax"], invoice["total_with_tax"] = "60.07", "1060.07"
    assert fields(invoice) == ["invoice.lines[0].tax_amount"]
    invoice = blue_invoice()
    invoice["lines"][0]["quantity"] = "2"
    assert fields(invoice) == ["invoice.lines[0].amount"]
    invoice["lines"][0]["unit_price"] = "500.005"
    assert check(invoice) == []  # 1000.01 vs 1000.00: within 0.01 inclusive


def test_quantity_and_unit_price_may_be_omitted() -> None:
    invoice = blue_invoice()
    del invoice["lines"][0]["quantity"], invoice["lines"][0]["unit_price"]
    assert check(invoice) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("total_amount", "1000.01"), ("total_tax", "60.01"), ("total_with_tax", "1060.01")],
)
def test_totals_are_exact(field: str, value: str) -> None:
    invoice = blue_invoice()
    invoice[field] = value
    assert f"invoice.{field}" in fields(invoice)


def test_zero_rated_and_exempt_lines() -> None:
    invoice = blue_invoice()
    line = invoice["lines"][0]
    line["tax_rate"], line["tax_amount"] = "0", "0.00"
    invoice["total_tax"], invoice["total_with_tax"] = "0.00", "1000.00"
    assert check(invoice) == []  # zero-rated export
    line["tax_exemption"] = "non_taxable"
    assert check(invoice) == []
    line["tax_amount"] = "0.01"
    invoice["total_tax"], invoice["total_with_tax"] = "0.01", "1000.01"
    assert fields(invoice) == ["invoice.lines[0].tax_amount"]


def test_rates_are_configurable() -> None:
    invoice = blue_invoice()
    rules = DomainRules(tax_rates=frozenset({Decimal("0.13")}))
    assert fields(invoice, rules=rules) == ["invoice.lines[0].tax_rate"]


def test_line_limit_is_configurable() -> None:
    invoice = blue_invoice()
    invoice["lines"] = invoice["lines"] * 3
    invoice["total_amount"], invoice["total_tax"], invoice["total_with_tax"] = (
        "3000.00", "180.00", "3180.00")  # fmt: skip
    assert check(invoice) == []
    assert fields(invoice, rules=DomainRules(max_lines=2)) == ["invoice.lines"]


def test_blue_amounts_must_be_positive() -> None:
    invoice = blue_invoice()
    line = invoice["lines"][0]
    line["quantity"], line["amount"], line["tax_amount"] = "-1", "-1000.00", "-60.00"
    invoice["total_amount"], invoice["total_tax"], invoice["total_with_tax"] = (
        "-1000.00", "-60.00", "-1060.00")  # fmt: skip
    assert set(fields(invoice)) == {
        "invoice.lines[0].quantity", "invoice.lines[0].amount", "invoice.lines[0].tax_amount",
        "invoice.total_amount", "invoice.total_tax", "invoice.total_with_tax",
    }  # fmt: skip


def test_red_amounts_must_be_negative_with_positive_unit_price() -> None:
    invoice = red_invoice()
    line = invoice["lines"][0]
    line["quantity"], line["amount"], line["tax_amount"] = "2", "9999.98", "1300.00"
    invoice["lines"] = [line]
    invoice["total_amount"], invoice["total_tax"], invoice["total_with_tax"] = (
        "9999.98", "1300.00", "11299.98")  # fmt: skip
    assert set(fields(invoice)) == {
        "invoice.lines[0].quantity", "invoice.lines[0].amount", "invoice.lines[0].tax_amount",
        "invoice.total_amount", "invoice.total_tax", "invoice.total_with_tax",
    }  # fmt: skip
    invoice = red_invoice()
    invoice["lines"][0]["unit_price"] = "-4999.99"
    invoice["lines"][0]["quantity"] = "2"
    assert set(fields(invoice)) == {"invoice.lines[0].unit_price", "invoice.lines[0].quantity"}


@pytest.mark.parametrize("original", [None, "2611200000000001234", RED := "26112000000000012399"])
def test_red_needs_another_invoice_as_original(original: str | None) -> None:
    invoice = red_invoice()
    assert invoice["invoice_number"] == RED
    invoice["original_invoice_number"] = original
    assert fields(invoice) == ["invoice.original_invoice_number"]
    del invoice["original_invoice_number"]
    assert fields(invoice) == ["invoice.original_invoice_number"]


def test_all_violations_are_returned() -> None:
    invoice = blue_invoice()
    invoice["seller"]["tax_id"] = "91110000600037341l"
    invoice["currency"] = "USD"
    invoice["lines"][0]["tax_code"] = "1"
    assert fields(invoice) == [
        "invoice.seller.tax_id",
        "invoice.lines[0].tax_code",
        "invoice.currency",
    ]


@pytest.mark.parametrize(
    "invoice",
    [
        {},
        {"kind": "red", "lines": "nope", "seller": [], "buyer": 3, "issue_date": 20261120},
        {"lines": [None, 5, {"amount": 1.5, "tax_rate": None, "quantity": [], "item_name": 7}]},
        {**blue_invoice(), "total_amount": "1" * 5000, "lines": [{"amount": "9" * 30}]},
    ],
)
def test_odd_values_become_violations_never_exceptions(invoice: dict[str, Any]) -> None:
    assert check(invoice)


def test_not_a_mapping() -> None:
    assert check([]) == [Violation("invoice", "The invoice must be a JSON object.")]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 19, 15, 59, tzinfo=UTC), date(2026, 11, 19)),
        (datetime(2026, 11, 19, 16, 0, tzinfo=UTC), date(2026, 11, 20)),
        (datetime(2026, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))), date(2027, 1, 1)),
    ],
)
def test_beijing_today(now: datetime, expected: date) -> None:
    assert beijing_today(now) == expected


def test_beijing_today_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        beijing_today(datetime(2026, 11, 20, 12, 0))


def test_beijing_today_defaults_to_now() -> None:
    assert isinstance(beijing_today(), date)


def test_beijing_today_turns_at_beijing_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026-11-30 15:59:59 UTC is one second before midnight in Beijing.
    midnight = datetime(2026, 11, 30, 16, 0, tzinfo=UTC).timestamp()
    for seconds, expected in [
        (midnight - 1, date(2026, 11, 30)),
        (midnight - 0.001, date(2026, 11, 30)),
        (midnight, date(2026, 12, 1)),
        (midnight + 86_399, date(2026, 12, 1)),
        (midnight + 86_400, date(2026, 12, 2)),
        (midnight - 5, date(2026, 11, 30)),  # a clock stepped back
    ]:
        monkeypatch.setattr(today_module, "clock", lambda s=seconds: s)
        assert beijing_today() == expected, seconds
