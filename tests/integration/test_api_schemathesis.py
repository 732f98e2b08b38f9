"""The worker's HTTP API keeps to docs/openapi.yaml: schemathesis generates requests from
the document and checks every answer (status documented, content type, body schema)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Pipeline

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).parents[2] / "docs" / "openapi.yaml"
#: per operation: enough to reach every status, small enough to stay well under a minute
EXAMPLES = 30
#: what "conforms" means here. Not positive_data_acceptance: a schema-valid request can
#: still be refused with a documented 400 (a page_token the API never issued, from > to).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]  # fmt: skip


#: Not fuzzed: they re-publish to the session's shared topics and re-drive invoices of
#: the shared ledger, so generated requests (`{"all": true}`) would replay every other
#: test's dead letters and race their assertions. Their requests and answers are checked
#: by the CLI/API tests instead; the role test calls them all.
NOT_FUZZED = {"POST /dlq/replay", "POST /reconcile/repair", "POST /sweep"}


def check_operations(base_url: str, auth: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_path(OPENAPI)
    schema.config.update(base_url=base_url)
    checked = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        if operation.label in NOT_FUZZED:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def conforms(case: Case[Any]) -> None:
            case.call_and_validate(checks=CHECKS, timeout=10, headers=auth)

        conforms()
        checked.append(operation.label)
    return checked


def check_known(base_url: str, seller: str, auth: dict[str, str]) -> None:
    """Generated sellers find nothing; these requests find invoices, and a next page."""
    schema = schemathesis.openapi.from_path(OPENAPI)
    schema.config.update(base_url=base_url)
    one = schema["/invoices/{seller_tax_id}/{invoice_number}"]["GET"]
    for number in ("1", "2"):
        path = {"seller_tax_id": seller, "invoice_number": number}
        assert (
            one.Case(path_parameters=path)
            .call_and_validate(checks=CHECKS, headers=auth)
            .status_code
            == 200
        )
    listing = schema["/invoices"]["GET"]
    query = {"seller_tax_id": seller, "from": "2026-01-01", "to": "2026-12-31", "page_size": 1}
    first = listing.Case(query=query).call_and_validate(checks=CHECKS, headers=auth).json()
    assert first["next_page_token"] is not None
    query["page_token"] = first["next_page_token"]
    second = listing.Case(query=query).call_and_validate(checks=CHECKS, headers=auth).json()
    assert [i["invoice_number"] for i in first["items"] + second["items"]] == ["1", "2"]


async def insert_known(pipeline: Pipeline) -> str:
    seller = f"SCHEMA-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pipeline.settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO invoices (seller_tax_id, invoice_number, state, content_hash, kind, "
            "issue_date, total_with_tax, platform_ref, accepted_at, confirmed_at) VALUES "
            "($1, '1', 'CONFIRMED', 'h', 'blue', '2026-03-01', 113.00, 'SBX1', now(), now()), "
            "($1, '2', 'FAILED', 'h', 'red', '2026-03-02', -113.00, NULL, NULL, NULL)",
            seller,
        )
        await conn.execute(
            "INSERT INTO invoice_history (seller_tax_id, invoice_number, from_state, to_state, "
            "reason_code, detail, worker_id) VALUES ($1, '1', NULL, 'SUBMITTING', NULL, NULL, "
            "'w'), ($1, '1', 'SUBMITTING', 'CONFIRMED', NULL, 'platform_ref SBX1', 'w')",
            seller,
        )
    finally:
        await conn.close()
    return seller


async def test_the_api_conforms_to_its_openapi_document(pipeline: Pipeline) -> None:
    base_url = f"http://127.0.0.1:{pipeline.worker.http_port}"
    seller = await insert_known(pipeline)
    await asyncio.wait_for(asyncio.to_thread(check_known, base_url, seller, pipeline.auth), 30)
    checked = await asyncio.wait_for(
        asyncio.to_thread(check_operations, base_url, pipeline.auth), 60
    )
    assert checked == [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /invoices",
        "GET /invoices/{seller_tax_id}/{invoice_number}",
        "GET /tokens",
        "POST /tokens",
        "DELETE /tokens/{name}",
    ]
