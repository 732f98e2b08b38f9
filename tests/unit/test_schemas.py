from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from streams.errors import SchemaViolationError
from streams.events.schemas import KNOWN_SCHEMA_VERSIONS, SCHEMA_DIR, validate_event

from .invoice_samples import confirmed_event, failed_event, issued_event, red_invoice

ISSUED = "invoice.issued"
Edit = Callable[[dict[str, Any]], None]


def violation(event_type: str, event: object) -> SchemaViolationError:
    with pytest.raises(SchemaViolationError) as info:
        validate_event(event_type, event)
    return info.value


def test_schema_files_are_valid_draft_07() -> None:
    paths = sorted(SCHEMA_DIR.glob("*.v*.json"))
    assert [p.name for p in paths] == [
        "invoice.confirmed.v1.json",
        "invoice.failed.v1.json",
        "invoice.issued.v1.json",
    ]
    for path in paths:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
        jsonschema.Draft7Validator.check_schema(schema)


def test_known_versions() -> None:
    assert dict(KNOWN_SCHEMA_VERSIONS) == {
        "invoice.issued": frozenset({1}),
        "invoice.confirmed": frozenset({1}),
        "invoice.failed": frozenset({1}),
    }


def test_events_md_samples_pass() -> None:
    validate_event(ISSUED, issued_event())
    validate_event(ISSUED, issued_event(red_invoice()))
    validate_event("invoice.confirmed", confirmed_event())
    validate_event("invoice.failed", failed_event())


def _delete(path: str) -> Edit:
    def edit(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = event
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return edit


def _set(path: str, value: object) -> Edit:
    def edit(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = event
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


ISSUED_CASES: list[tuple[Edit, str, str]] = [
    (_delete("event_id"), "event_id", "missing"),
    (_delete("occurred_at"), "occurred_at", "missing"),
    (_delete("invoice"), "invoice", "missing"),
    (_delete("invoice.lines"), "invoice.lines", "missing"),
    (_delete("invoice.seller.tax_id"), "invoice.seller.tax_id", "missing"),
    (_delete("invoice.buyer.name"), "invoice.buyer.name", "missing"),
    (_delete("invoice.lines.0.tax_amount"), "invoice.lines[0].tax_amount", "missing"),
    (_delete("invoice.total_with_tax"), "invoice.total_with_tax", "missing"),
    (_set("event_type", "invoice.confirmed"), "event_type", '"invoice.issued"'),
    (_set("occurred_at", "2026-11-20T09:17:58"), "occurred_at", "offset"),
    (_set("occurred_at", "yesterday"), "occurred_at", "RFC 3339"),
    (_set("invoice", []), "invoice", "must be object"),
    (_set("invoice.lines", {}), "invoice.lines", "must be array"),
    (_set("invoice.lines.0", "x"), "invoice.lines[0]", "must be object"),
    (_set("invoice.lines.0.tax_amount", 60), "invoice.lines[0].tax_amount", "must be string"),
    (_set("invoice.lines.0.tax_amount", "60.001"), "invoice.lines[0].tax_amount", "2 places"),
    (_set("invoice.lines.0.amount", "1e3"), "invoice.lines[0].amount", "decimal string"),
    (_set("invoice.lines.0.quantity", "1.123456789"), "invoice.lines[0].quantity", "8 places"),
    (_set("invoice.lines.0.unit_price", None), "invoice.lines[0].unit_price", "must be string"),
    (_set("invoice.lines.0.tax_rate", "-0.06"), "invoice.lines[0].tax_rate", "non-negative"),
    (_set("invoice.lines.0.tax_exemption", "free"), "invoice.lines[0].tax_exemption", "one of"),
    (_set("invoice.lines.0.line_no", "1"), "invoice.lines[0].line_no", "must be integer"),
    (_set("invoice.lines.0.line_no", True), "invoice.lines[0].line_no", "must be integer"),
    (_set("invoice.lines.0.line_no", 0), "invoice.lines[0].line_no", "bigger than or equal to 1"),
    (_set("invoice.kind", "green"), "invoice.kind", "one of"),
    (_set("invoice.invoice_type", "vat"), "invoice.invoice_type", "one of"),
    (_set("invoice.issue_date", "20261120"), "invoice.issue_date", "calendar date"),
    (_set("invoice.buyer.natural_person", "yes"), "invoice.buyer.natural_person", "boolean"),
    (_set("invoice.buyer.tax_id", 1), "invoice.buyer.tax_id", "string or null"),
    (_set("invoice.total_tax", "60.0.0"), "invoice.total_tax", "decimal string"),
    (_set("invoice.original_invoice_number", 5), "invoice.original_invoice_number", "string"),
]


@pytest.mark.parametrize(("edit", "field", "words"), ISSUED_CASES, ids=[c[1] for c in ISSUED_CASES])
def test_issued_violations_name_the_path(edit: Edit, field: str, words: str) -> None:
    event = issued_event()
    edit(event)
    error = violation(ISSUED, event)
    assert error.field == field
    assert error.reason_code == "SCHEMA_VIOLATION"
    assert field in error.message
    assert words in error.message


@pytest.mark.parametrize("version", [2, 0, 99, "1", True, None, 1.5])
def test_unknown_schema_version_fails(version: object) -> None:
    event = issued_event()
    event["schema_version"] = version
    error = violation(ISSUED, event)
    assert error.field == "schema_version"
    assert "known: 1" in error.message


def test_missing_schema_version_fails() -> None:
    event = issued_event()
    del event["schema_version"]
    assert violation(ISSUED, event).field == "schema_version"


def test_extra_fields_pass_everywhere() -> None:
    event = issued_event()
    event["trace_id"] = "abc"
    event["invoice"]["department"] = {"code": 7}
    event["invoice"]["seller"]["address"] = "北京市海淀区"
    event["invoice"]["buyer"]["email"] = "a@example.com"
    event["invoice"]["lines"][0]["discount"] = "0.00"
    validate_event(ISSUED, event)
    confirmed = {**confirmed_event(), "platform_batch": 3}
    validate_event("invoice.confirmed", confirmed)
    validate_event("invoice.failed", {**failed_event(), "dlq_offset": 12})


def test_optional_fields_may_be_omitted() -> None:
    event = issued_event()
    invoice = event["invoice"]
    for key in ("original_invoice_number", "remarks"):
        del invoice[key]
    del invoice["buyer"]["tax_id"], invoice["buyer"]["natural_person"]
    del invoice["lines"][0]["quantity"], invoice["lines"][0]["unit_price"]
    del invoice["lines"][0]["unit"], event["source"]
    validate_event(ISSUED, event)


@pytest.mark.parametrize("event", [[], "x", None, 3])
def test_non_objects_fail(event: object) -> None:
    error = violation(ISSUED, event)
    assert error.field is None
    assert "JSON object" in error.message


def test_unknown_event_type_fails() -> None:
    error = violation("invoice.voided", issued_event())
    assert error.field == "event_type"


CONFIRMED_CASES: list[tuple[Edit, str]] = [
    (_delete("platform_ref"), "platform_ref"),
    (_delete("source_event_id"), "source_event_id"),
    (_set("attempts", "1"), "attempts"),
    (_set("attempts", -1), "attempts"),
    (_set("accepted_at", "2026-11-20 09:18"), "accepted_at"),
    (_set("seller_tax_id", None), "seller_tax_id"),
    (_set("event_type", "invoice.failed"), "event_type"),
]


@pytest.mark.parametrize(("edit", "field"), CONFIRMED_CASES, ids=[c[1] for c in CONFIRMED_CASES])
def test_confirmed_violations(edit: Edit, field: str) -> None:
    event = confirmed_event()
    edit(event)
    assert violation("invoice.confirmed", event).field == field


FAILED_CASES: list[tuple[Edit, str]] = [
    (_delete("dead_lettered"), "dead_lettered"),
    (_delete("field"), "field"),
    (_set("dead_lettered", "yes"), "dead_lettered"),
    (_set("retryable", 0), "retryable"),
    (_set("attempts", 1.5), "attempts"),
    (_set("reason", None), "reason"),
    (_set("reason_code", ""), "reason_code"),
]


@pytest.mark.parametrize(("edit", "field"), FAILED_CASES, ids=[c[1] for c in FAILED_CASES])
def test_failed_violations(edit: Edit, field: str) -> None:
    event = failed_event()
    edit(event)
    assert violation("invoice.failed", event).field == field


def test_failed_identity_may_be_known() -> None:
    event = failed_event()
    event.update(
        invoice_number="26112000000000012345",
        seller_tax_id="91110108MA01XXXXXB",
        field="invoice.lines[0].tax_amount",
        source_event_id="0d6c1c1e-8f3a-4a8e-9d7e-2a1f0e6b9c11",
        reason_code="VALIDATION",
        attempts=0,
    )
    validate_event("invoice.failed", event)


def test_other_draft_07_validators_agree_on_the_samples() -> None:
    # Consumers may validate with any draft-07 library, not only fastjsonschema.
    samples = {
        ISSUED: issued_event(),
        "invoice.confirmed": confirmed_event(),
        "invoice.failed": failed_event(),
    }
    for event_type, event in samples.items():
        schema = json.loads((SCHEMA_DIR / f"{event_type}.v1.json").read_text(encoding="utf-8"))
        validator = jsonschema.Draft7Validator(schema)
        assert list(validator.iter_errors(event)) == []
        event["schema_version"] = 2
        assert list(validator.iter_errors(event)) != []
