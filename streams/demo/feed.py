"""A realistic feed of issued invoices: several sellers, blue and red, a few bad ones.

Every invalid message is bad in a known way, so the demo and the tests can check
that each ends with the reason code it deserves.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

from streams.validation.taxid import make_tax_id

CENT = Decimal("0.01")

SELLERS = (
    (make_tax_id("91110108MA01ABCD0"), "北京云帆科技有限公司", "11"),
    (make_tax_id("91310115MA1K3QWE7"), "上海海川贸易有限公司", "31"),
    (make_tax_id("91440300MA5FXY312"), "深圳市南山电子有限公司", "44"),
    (make_tax_id("91330106MA2GHJK34"), "杭州西湖软件有限公司", "33"),
    (make_tax_id("91510100MA6ABCD56"), "成都天府餐饮管理有限公司", "51"),
)
ITEMS = (
    ("*信息技术服务*软件维护", "3040201000000000000", Decimal("0.06"), "次"),
    ("*电子计算机*笔记本电脑", "1090511030000000000", Decimal("0.13"), "台"),
    ("*餐饮服务*餐费", "3070401000000000000", Decimal("0.06"), "次"),
    ("*交通运输服务*运输费", "3010101000000000000", Decimal("0.09"), "次"),
    ("*农产品*大米", "1010101020000000000", Decimal("0.09"), "千克"),
)
BUYERS = (
    (make_tax_id("91110000600037341"), "北京某某集团有限公司", False),
    (make_tax_id("91120116MA05JKL78"), "天津港物流有限公司", False),
    (None, "张三", True),
    (None, "李四", True),
)

#: how each kind of bad message should end
EXPECTED_CODES = {
    "bad_check_digit": "VALIDATION",
    "totals_off": "VALIDATION",
    "bad_region": "VALIDATION",
    "not_json": "MALFORMED",
    "missing_field": "SCHEMA_VIOLATION",
    "unknown_version": "SCHEMA_VIOLATION",
}


@dataclass(frozen=True)
class FeedItem:
    key: bytes
    value: bytes
    #: None for a valid invoice, else a key of ``EXPECTED_CODES``
    defect: str | None
    #: an identical re-send of an earlier item
    resend: bool = False


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def make_invoice(
    rng: random.Random,
    *,
    seller_index: int,
    number: str,
    issue_date: date,
    kind: str = "blue",
    original: dict[str, Any] | None = None,
) -> dict[str, Any]:
    seller_id, seller_name, _ = SELLERS[seller_index]
    sign = Decimal(-1) if kind == "red" else Decimal(1)
    if original is not None:
        # A full reversal mirrors the original's lines.
        lines = [
            {**line, "quantity": str(-Decimal(line["quantity"])),
             "amount": _money(-Decimal(line["amount"])),
             "tax_amount": _money(-Decimal(line["tax_amount"]))}
            for line in original["lines"]
        ]  # fmt: skip
        buyer = original["buyer"]
        invoice_type = original["invoice_type"]
    else:
        lines = []
        for no in range(1, rng.randint(1, 4) + 1):
            name, code, rate, unit = rng.choice(ITEMS)
            quantity = Decimal(rng.randint(1, 20))
            unit_price = Decimal(rng.randint(100, 500000)) / 100
            amount = (quantity * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)
            lines.append({
                "line_no": no, "item_name": name, "tax_code": code,
                "quantity": str(quantity * sign), "unit": unit, "unit_price": str(unit_price),
                "amount": _money(amount * sign), "tax_rate": str(rate),
                "tax_amount": _money(amount * rate * sign),
            })  # fmt: skip
        buyer_id, buyer_name, natural = rng.choice(BUYERS)
        buyer = {"tax_id": buyer_id, "name": buyer_name, "natural_person": natural}
        invoice_type = "special" if buyer_id and rng.random() < 0.3 else "general"
    total_amount = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    total_tax = sum((Decimal(line["tax_amount"]) for line in lines), Decimal(0))
    return {
        "invoice_number": number,
        "kind": kind,
        "invoice_type": invoice_type,
        "issue_date": issue_date.isoformat(),
        "seller": {"tax_id": seller_id, "name": seller_name},
        "buyer": buyer,
        "lines": lines,
        "total_amount": _money(total_amount),
        "total_tax": _money(total_tax),
        "total_with_tax": _money(total_amount + total_tax),
        "currency": "CNY",
        "original_invoice_number": None if original is None else original["invoice_number"],
        "remarks": None,
    }


def issued_event(invoice: dict[str, Any], *, source: str = "demo-billing") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "invoice.issued",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": source,
        "invoice": invoice,
    }


def _spoil(event: dict[str, Any], defect: str) -> bytes:
    invoice = event["invoice"]
    if defect == "bad_check_digit":
        tax_id = invoice["seller"]["tax_id"]
        invoice["seller"]["tax_id"] = tax_id[:-1] + ("0" if tax_id[-1] != "0" else "1")
    elif defect == "totals_off":
        invoice["total_amount"] = _money(Decimal(invoice["total_amount"]) + 1)
    elif defect == "bad_region":
        invoice["invoice_number"] = (
            invoice["invoice_number"][:2] + "99" + invoice["invoice_number"][4:]
        )
    elif defect == "missing_field":
        del invoice["lines"]
    elif defect == "unknown_version":
        event["schema_version"] = 99
    elif defect == "not_json":
        truncated = (
            f'{{"event_type": "invoice.issued", "invoice": {{"n": "{invoice["invoice_number"]}'
        )
        return truncated.encode()
    return orjson.dumps(event)


def generate(
    count: int,
    *,
    today: date,
    run_id: int,
    seed: int = 7,
    invalid_fraction: float = 0.04,
    red_fraction: float = 0.03,
    resend_fraction: float = 0.02,
) -> Iterator[FeedItem]:
    """``count`` messages; ``run_id`` keeps invoice numbers unique across demo runs
    because the local ledger persists between them."""
    rng = random.Random(seed)
    blues: list[dict[str, Any]] = []
    defects = sorted(EXPECTED_CODES)
    for i in range(count):
        seller_index = i % len(SELLERS)
        region = SELLERS[seller_index][2]
        number = f"{today:%y}{region}2{run_id % 10**9:09d}{i:06d}"
        roll = rng.random()
        if roll < invalid_fraction:
            defect = defects[i % len(defects)]
            event = issued_event(make_invoice(rng, seller_index=seller_index, number=number,
                                              issue_date=today))  # fmt: skip
            yield FeedItem(_key(event), _spoil(event, defect), defect)
            continue
        if roll < invalid_fraction + red_fraction and blues:
            original = blues.pop(rng.randrange(len(blues)))
            seller = next(n for n, s in enumerate(SELLERS) if s[0] == original["seller"]["tax_id"])
            number = f"{today:%y}{SELLERS[seller][2]}2{run_id % 10**9:09d}{i:06d}"
            invoice = make_invoice(rng, seller_index=seller, number=number, issue_date=today,
                                   kind="red", original=original)  # fmt: skip
            event = issued_event(invoice)
            yield FeedItem(_key(event), orjson.dumps(event), None)
            continue
        if roll < invalid_fraction + red_fraction + resend_fraction and blues:
            # A billing system re-sending an invoice it already sent, with a new event id.
            event = issued_event(rng.choice(blues))
            yield FeedItem(_key(event), orjson.dumps(event), None, resend=True)
            continue
        invoice = make_invoice(rng, seller_index=seller_index, number=number, issue_date=today)
        blues.append(invoice)
        event = issued_event(invoice)
        yield FeedItem(_key(event), orjson.dumps(event), None)


def _key(event: dict[str, Any]) -> bytes:
    invoice = event["invoice"]
    return f"{invoice['seller']['tax_id']}:{invoice['invoice_number']}".encode()
