"""``invoice-sync import`` file parsing: the CSV layout of docs/import.md, JSON Lines,
and problems reported with the row (and column) a person has to fix."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import orjson
import pytest

from streams.client.importing import (
    ImportFileError,
    check_invoices,
    parse_csv,
    parse_file,
    parse_jsonl,
)
from streams.client.publisher import build_event
from streams.validation.rules import DomainRules

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"
RULES = DomainRules()


def _sample_date() -> date:
    first = orjson.loads((SAMPLES / "invoices.jsonl").read_text().splitlines()[0])
    return date.fromisoformat(first["issue_date"])


def _csv_lines() -> list[str]:
    return (SAMPLES / "invoices.csv").read_text(encoding="utf-8").splitlines()


def _check(text: str) -> tuple[int, list[str]]:
    parsed, errors = parse_csv(text)
    ready, problems = check_invoices(parsed, RULES, today=_sample_date(), source="t")
    return len(ready), [str(e) for e in sorted(errors + problems)]


def test_sample_csv_and_jsonl_hold_the_same_valid_invoices() -> None:
    from_csv, csv_errors = parse_file(SAMPLES / "invoices.csv")
    from_jsonl, jsonl_errors = parse_file(SAMPLES / "invoices.jsonl")
    assert csv_errors == jsonl_errors == []
    assert [p.invoice for p in from_csv] == [p.invoice for p in from_jsonl]
    assert [len(p.rows) for p in from_csv] == [4, 3, 1]
    assert from_csv[1].rows == [6, 7, 8]  # the header is row 1
    ready, problems = check_invoices(from_csv, RULES, today=_sample_date(), source="t")
    assert problems == []
    assert [r.key for r in ready] == [
        f"{p.invoice['seller']['tax_id']}:{p.invoice['invoice_number']}" for p in from_csv
    ]
    assert all(r.event["source"] == "t" for r in ready)


def test_line_numbers_default_to_the_rows_order() -> None:
    header, *rows = _csv_lines()
    column = header.split(",").index("line_no")
    blanked = []
    for row in rows[:4]:
        cells = row.split(",")
        cells[column] = ""
        blanked.append(",".join(cells))
    parsed, errors = parse_csv("\n".join([header, *blanked]))
    assert errors == []
    assert [line["line_no"] for line in parsed[0].invoice["lines"]] == [1, 2, 3, 4]


def test_a_domain_violation_names_the_row_and_column_of_its_line() -> None:
    header, *rows = _csv_lines()
    cells = rows[1].split(",")  # row 3: line 2 of the first invoice
    cells[header.split(",").index("tax_amount")] = "1.00"
    rows[1] = ",".join(cells)
    ready, errors = _check("\n".join([header, *rows]))
    assert ready == 2
    assert any(e.startswith("row 3, tax_amount: ") for e in errors)
    assert any(e.startswith("row 2, total_tax: ") for e in errors)  # totals no longer add up


def test_rows_of_one_invoice_must_agree_on_invoice_columns() -> None:
    header, *rows = _csv_lines()
    rows[2] = rows[2].replace("99872.41", "99872.42")  # row 4 of the first invoice
    ready, errors = _check("\n".join([header, *rows]))
    assert ready == 2
    assert errors == ["row 4, total_amount: '99872.42' differs from '99872.41' on row 2, "
                      "the first row of this invoice"]  # fmt: skip


def test_header_problems_are_reported_on_row_1() -> None:
    header, *rows = _csv_lines()
    bad = header.replace("tax_amount", "tax_amout").replace("seller_name,", "")
    _, errors = parse_csv("\n".join([bad, *rows]))
    assert [str(e) for e in errors] == [
        "row 1: unknown column 'tax_amout'",
        "row 1: required column 'seller_name' is missing",
        "row 1: required column 'tax_amount' is missing",
    ]


def test_unreadable_cells_are_reported_once_and_not_checked_further() -> None:
    header, *rows = _csv_lines()
    columns = header.split(",")
    rows[3] += ",extra"  # row 5, the first invoice's last line
    cells = rows[4].split(",")  # row 6: first line of the second invoice
    cells[columns.index("amount")] = ""
    rows[4] = ",".join(cells)
    cells = rows[7].split(",")  # row 9: the third invoice
    cells[columns.index("buyer_natural_person")] = "maybe"
    rows[7] = ",".join(cells)
    ready, errors = _check("\n".join([header, *rows]))
    assert ready == 0
    assert errors == [
        "row 5: has more cells than the header's 25",
        "row 6, amount: is empty",
        "row 9, buyer_natural_person: must be true or false, got 'maybe'",
    ]


def test_jsonl_takes_invoices_or_whole_events_and_reports_bad_lines() -> None:
    invoices = [
        orjson.loads(line) for line in (SAMPLES / "invoices.jsonl").read_text().splitlines()
    ]
    event = build_event(invoices[1], event_id="given-id")
    text = "\n".join([orjson.dumps(invoices[0]).decode(), "", orjson.dumps(event).decode(),
                      "{not json", "[1]", orjson.dumps(invoices[0]).decode()])  # fmt: skip
    parsed, errors = parse_jsonl(text)
    assert [str(e).split(":")[0] for e in errors] == ["row 4", "row 5"]
    ready, problems = check_invoices(parsed, RULES, today=_sample_date(), source="t")
    assert [r.rows for r in ready] == [(1,), (3,)]
    assert ready[1].event["event_id"] == "given-id"
    assert [str(p) for p in problems] == [f"row 6: invoice {ready[0].key} is already on row 1"]


def test_only_csv_and_jsonl_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "invoices.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ImportFileError, match=r"\.csv or \.jsonl"):
        parse_file(path)
