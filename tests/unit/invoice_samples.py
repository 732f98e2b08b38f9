"""Valid invoices and events to start a test from; each test spoils one field."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

TODAY = date(2026, 11, 20)
SELLER_TAX_ID = "91110108MA01XXXXXB"
BUYER_TAX_ID = "91110000600037341L"
BLUE_NUMBER = "26112000000000012345"
RED_NUMBER = "26112000000000012399"

_BLUE: dict[str, Any] = {
    "invoice_number": BLUE_NUMBER,
    "kind": "blue",
    "invoice_type": "general",
    "issue_date": "2026-11-20",
    "seller": {"tax_id": SELLER_TAX_ID, "name": "北京某某科技有限公司"},
    "buyer": {"tax_id": None, "name": "张三", "natural_person": True},
    "lines": [
        {
            "line_no": 1,
            "item_name": "*信息技术服务*软件维护",
            "tax_code": "3040201000000000000",
            "quantity": "1",
            "unit": "次",
            "unit_price": "1000.00",
            "amount": "1000.00",
            "tax_rate": "0.06",
            "tax_amount": "60.00",
        }
    ],
    "total_amount": "1000.00",
    "total_tax": "60.00",
    "total_with_tax": "1060.00",
    "currency": "CNY",
    "original_invoice_number": None,
    "remarks": None,
}

_RED: dict[str, Any] = {
    **_BLUE,
    "invoice_number": RED_NUMBER,
    "kind": "red",
    "invoice_type": "special",
    "buyer": {"tax_id": BUYER_TAX_ID, "name": "北京某某集团有限公司", "natural_person": False},
    "lines": [
        {
            "line_no": 1,
            "item_name": "*电子计算机*笔记本电脑",
            "tax_code": "1090511030000000000",
            "quantity": "-2",
            "unit": "台",
            "unit_price": "4999.99",
            "amount": "-9999.98",
            "tax_rate": "0.13",
            "tax_amount": "-1300.00",
        },
        {
            "line_no": 2,
            "item_name": "*农产品*大米",
            "tax_code": "1010101020000000000",
            "amount": "-100.00",
            "tax_rate": "0",
            "tax_exemption": "exempt",
            "tax_amount": "0.00",
        },
    ],
    "total_amount": "-10099.98",
    "total_tax": "-1300.00",
    "total_with_tax": "-11399.98",
    "original_invoice_number": BLUE_NUMBER,
    "red_confirmation_number": "11000000000000000001",
}


def blue_invoice() -> dict[str, Any]:
    """The events.md sample: general, natural-person buyer, one 6% line."""
    return copy.deepcopy(_BLUE)


def red_invoice() -> dict[str, Any]:
    """A special red invoice with a 13% line and an exempt 0-rate line."""
    return copy.deepcopy(_RED)


def issued_event(invoice: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "event_id": "0d6c1c1e-8f3a-4a8e-9d7e-2a1f0e6b9c11",
        "event_type": "invoice.issued",
        "schema_version": 1,
        "occurred_at": "2026-11-20T09:17:58+08:00",
        "source": "billing-bj-01",
        "invoice": blue_invoice() if invoice is None else invoice,
    }


def confirmed_event() -> dict[str, Any]:
    return {
        "event_id": "5b0f3a52-1c55-4c1e-a1cf-3d0a1c2b7e01",
        "event_type": "invoice.confirmed",
        "schema_version": 1,
        "occurred_at": "2026-11-20T01:18:02.123456+00:00",
        "invoice_number": BLUE_NUMBER,
        "seller_tax_id": SELLER_TAX_ID,
        "platform_ref": "PLT-2026-000001",
        "accepted_at": "2026-11-20T09:18:01+08:00",
        "source_event_id": "0d6c1c1e-8f3a-4a8e-9d7e-2a1f0e6b9c11",
        "attempts": 1,
    }


def failed_event() -> dict[str, Any]:
    return {
        "event_id": "7e3c9b0a-2d44-4f0e-8b1a-6c5d4e3f2a10",
        "event_type": "invoice.failed",
        "schema_version": 1,
        "occurred_at": "2026-11-20T01:18:02Z",
        "invoice_number": None,
        "seller_tax_id": None,
        "reason_code": "MALFORMED",
        "reason": "not valid UTF-8 JSON: unexpected end of data",
        "field": None,
        "retryable": False,
        "attempts": 0,
        "source_event_id": None,
        "dead_lettered": True,
    }
