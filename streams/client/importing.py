"""Reading invoices from a CSV or JSON Lines file for ``invoice-sync import``.

Nothing here talks to Kafka: a file is parsed and every invoice checked first, so
that a bad row is reported (with its row number) before anything is published.
The formats are documented in ``docs/import.md``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from streams.client.publisher import build_event, check_event, event_key
from streams.validation.rules import DomainRules

__all__ = [
    "CSV_COLUMNS",
    "ImportFileError",
    "ParsedInvoice",
    "ReadyEvent",
    "RowError",
    "check_invoices",
    "parse_csv",
    "parse_file",
    "parse_jsonl",
]

#: invoice-level CSV columns (repeated on every line row of the invoice) -> required
INVOICE_COLUMNS: dict[str, bool] = {
    "invoice_number": True, "kind": True, "invoice_type": True, "issue_date": True,
    "seller_tax_id": True, "seller_name": True, "buyer_tax_id": False, "buyer_name": True,
    "buyer_natural_person": False, "total_amount": True, "total_tax": True,
    "total_with_tax": True, "currency": False, "original_invoice_number": False,
    "red_confirmation_number": False, "remarks": False, "event_id": False,
}  # fmt: skip
#: line-level CSV columns -> required
LINE_COLUMNS: dict[str, bool] = {
    "line_no": False, "item_name": True, "tax_code": True, "quantity": False, "unit": False,
    "unit_price": False, "amount": True, "tax_rate": True, "tax_amount": True,
    "tax_exemption": False,
}  # fmt: skip
CSV_COLUMNS = (*INVOICE_COLUMNS, *LINE_COLUMNS)
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}
_LINE_FIELD = re.compile(r"^invoice\.lines\[(\d+)\](?:\.(\w+))?")
_FIELD_COLUMNS = {
    "invoice.seller.tax_id": "seller_tax_id", "invoice.seller.name": "seller_name",
    "invoice.buyer.tax_id": "buyer_tax_id", "invoice.buyer.name": "buyer_name",
    "invoice.buyer.natural_person": "buyer_natural_person",
}  # fmt: skip


class ImportFileError(Exception):
    """The file cannot be read at all (missing, not UTF-8, unknown extension)."""


@dataclass(frozen=True, order=True)
class RowError:
    """``row``: 1-based line of the file (the CSV header is row 1)."""

    row: int
    message: str
    column: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class ParsedInvoice:
    """One invoice read from the file; ``rows[i]`` is the row of line ``i``."""

    rows: list[int]
    invoice: dict[str, Any]
    event_id: str | None = None
    #: a complete event given in the file (JSON Lines), published as it is
    event: dict[str, Any] | None = None
    #: CSV invoice-level values, to check that the rows of one invoice agree
    head: dict[str, str] = field(default_factory=dict)
    #: a row of it could not be read; its problems are reported already
    broken: bool = False


@dataclass(frozen=True)
class ReadyEvent:
    rows: tuple[int, ...]
    key: str
    event: dict[str, Any]


def _cell(row: Mapping[str, str | None], name: str) -> str | None:
    value = (row.get(name) or "").strip()
    return value or None


def _line(
    row: Mapping[str, str | None], position: int, at: int
) -> tuple[dict[str, Any], list[RowError]]:
    errors: list[RowError] = []
    line: dict[str, Any] = {}
    raw_no = _cell(row, "line_no")
    if raw_no is None:
        line["line_no"] = position
    elif raw_no.isdigit() and int(raw_no) > 0:
        line["line_no"] = int(raw_no)
    else:
        errors.append(RowError(at, f"must be a positive whole number, got {raw_no!r}", "line_no"))
    for name in ("item_name", "tax_code", "amount", "tax_rate", "tax_amount"):
        line[name] = _cell(row, name) or ""
        if not line[name]:
            errors.append(RowError(at, "is empty", name))
    for name in ("quantity", "unit_price", "tax_exemption"):
        if (value := _cell(row, name)) is not None:
            line[name] = value
    line["unit"] = _cell(row, "unit")
    return line, errors


def _invoice(row: Mapping[str, str | None], at: int) -> tuple[dict[str, Any], list[RowError]]:
    errors: list[RowError] = []
    buyer_tax_id = _cell(row, "buyer_tax_id")
    natural = _cell(row, "buyer_natural_person")
    if natural is None:
        natural_person = buyer_tax_id is None
    elif natural.lower() in _TRUE | _FALSE:
        natural_person = natural.lower() in _TRUE
    else:
        natural_person = False
        errors.append(RowError(at, f"must be true or false, got {natural!r}",
                               "buyer_natural_person"))  # fmt: skip
    invoice: dict[str, Any] = {
        "invoice_number": _cell(row, "invoice_number") or "",
        "kind": _cell(row, "kind") or "",
        "invoice_type": _cell(row, "invoice_type") or "",
        "issue_date": _cell(row, "issue_date") or "",
        "seller": {"tax_id": _cell(row, "seller_tax_id") or "",
                   "name": _cell(row, "seller_name") or ""},
        "buyer": {"tax_id": buyer_tax_id, "name": _cell(row, "buyer_name") or "",
                  "natural_person": natural_person},
        "lines": [],
        "total_amount": _cell(row, "total_amount") or "",
        "total_tax": _cell(row, "total_tax") or "",
        "total_with_tax": _cell(row, "total_with_tax") or "",
        "currency": _cell(row, "currency") or "CNY",
        "original_invoice_number": _cell(row, "original_invoice_number"),
        "remarks": _cell(row, "remarks"),
    }  # fmt: skip
    if (red_form := _cell(row, "red_confirmation_number")) is not None:
        invoice["red_confirmation_number"] = red_form
    for name, required in INVOICE_COLUMNS.items():
        if required and _cell(row, name) is None:
            errors.append(RowError(at, "is empty", name))
    return invoice, errors


def parse_csv(text: str) -> tuple[list[ParsedInvoice], list[RowError]]:
    """One row per invoice line; rows with the same seller_tax_id and invoice_number
    form one invoice and must repeat its invoice-level columns identically."""
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        header = [name.strip() for name in reader.fieldnames or ()]
    except csv.Error as exc:
        return [], [RowError(1, f"not a readable CSV header: {exc}")]
    reader.fieldnames = header
    errors = [RowError(1, f"unknown column {name!r}") for name in header
              if name not in CSV_COLUMNS]  # fmt: skip
    required = [n for n, r in (INVOICE_COLUMNS | LINE_COLUMNS).items() if r]
    errors += [RowError(1, f"required column {name!r} is missing") for name in required
               if name not in header]  # fmt: skip
    if errors:
        return [], errors
    invoices: dict[tuple[str, str], ParsedInvoice] = {}
    try:
        for row in reader:
            at = reader.line_num
            problems = []
            if None in row:
                problems.append(RowError(at, f"has more cells than the header's {len(header)}"))
                del row[None]
            if not any((value or "").strip() for value in row.values()):
                continue
            invoice, invoice_problems = _invoice(row, at)
            line, line_problems = _line(row, 1, at)
            problems += invoice_problems + line_problems
            key = (invoice["seller"]["tax_id"], invoice["invoice_number"])
            head = {name: _cell(row, name) or "" for name in INVOICE_COLUMNS}
            parsed = invoices.get(key)
            if parsed is None:
                parsed = invoices[key] = ParsedInvoice([], invoice, head["event_id"] or None,
                                                       head=head)  # fmt: skip
            else:
                first = parsed.rows[0] if parsed.rows else at
                problems += [
                    RowError(at, f"{value!r} differs from {parsed.head[name]!r} on row {first}, "
                             "the first row of this invoice", name)
                    for name, value in head.items() if value != parsed.head[name]
                ]  # fmt: skip
                if _cell(row, "line_no") is None:
                    line["line_no"] = len(parsed.invoice["lines"]) + 1
            parsed.rows.append(at)
            parsed.broken = parsed.broken or bool(problems)
            errors += problems
            parsed.invoice["lines"].append(line)
    except csv.Error as exc:
        errors.append(RowError(reader.line_num, f"not readable as CSV: {exc}"))
    return list(invoices.values()), errors


def parse_jsonl(text: str) -> tuple[list[ParsedInvoice], list[RowError]]:
    """One JSON object per line: an invoice, or a whole ``invoice.issued`` event."""
    parsed: list[ParsedInvoice] = []
    errors: list[RowError] = []
    for at, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            errors.append(RowError(at, f"not valid JSON: {exc}"))
            continue
        if not isinstance(obj, dict):
            errors.append(RowError(at, "must be a JSON object (an invoice or an event)"))
        elif "event_type" in obj:
            invoice = obj.get("invoice")
            parsed.append(ParsedInvoice([at], invoice if isinstance(invoice, dict) else {},
                                        event=obj))  # fmt: skip
        else:
            parsed.append(ParsedInvoice([at], obj))
    return parsed, errors


def parse_file(path: Path) -> tuple[list[ParsedInvoice], list[RowError]]:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ImportFileError(f"{path}: expected a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"cannot read {path}: {exc}") from exc
    return parse_csv(text) if suffix == ".csv" else parse_jsonl(text)


def _locate(parsed: ParsedInvoice, field_path: str) -> tuple[int, str | None]:
    """The row and (CSV) column a violation's field path points at."""
    match = _LINE_FIELD.match(field_path)
    if match and int(match[1]) < len(parsed.rows):
        return parsed.rows[int(match[1])], match[2]
    if field_path in _FIELD_COLUMNS:
        return parsed.rows[0], _FIELD_COLUMNS[field_path]
    return parsed.rows[0], field_path.removeprefix("invoice.") if field_path else None


def check_invoices(
    parsed: list[ParsedInvoice], rules: DomainRules, *, today: date, source: str
) -> tuple[list[ReadyEvent], list[RowError]]:
    """Build each invoice's event and check it as the worker would; also refuses one
    invoice twice in a file. Returns the valid events and every problem found."""
    ready: list[ReadyEvent] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for item in parsed:
        if item.broken:
            continue
        event = item.event or build_event(item.invoice, event_id=item.event_id, source=source)
        problems = check_event(event, rules, today=today)
        if problems:
            for violation in problems:
                row, column = _locate(item, violation.field)
                errors.append(RowError(row, violation.message, column))
            continue
        key = event_key(event)
        if key in seen:
            errors.append(RowError(item.rows[0], f"invoice {key} is already on row {seen[key]}"))
            continue
        seen[key] = item.rows[0]
        ready.append(ReadyEvent(tuple(item.rows), key, event))
    return ready, sorted(errors)
