"""Fetch both sides of one seller's date range and compare them; write the report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.ledger.queries import seller_invoices
from streams.ledger.store import Ledger
from streams.platform.client import PlatformClient
from streams.reconcile.compare import Comparison, compare
from streams.reconcile.repair import Redrive, redrive_missing
from streams.security.audit import audited

REPORT_COLUMNS = (
    "bucket", "invoice_number", "issue_date", "ledger_state", "ledger_total",
    "platform_total", "ledger_platform_ref", "platform_ref",
)  # fmt: skip


async def reconcile(
    ledger: Ledger,
    platform: PlatformClient,
    seller_tax_id: str,
    date_from: date,
    date_to: date,
    *,
    page_size: int = 1000,
) -> Comparison:
    """The ledger's rows (keyset pages) against the platform's list (its own pages)."""
    rows = [r async for r in seller_invoices(ledger, seller_tax_id, date_from, date_to)]
    items = [
        i
        async for i in platform.list_invoices(
            seller_tax_id, date_from, date_to, page_size=page_size
        )
    ]
    return compare(rows, items)


async def reconcile_and_repair(
    ledger: Ledger,
    platform: PlatformClient,
    seller_tax_id: str,
    date_from: date,
    date_to: date,
    *,
    actor: str,
) -> tuple[Comparison, Redrive]:
    """Reconcile, then re-drive what is missing on the platform; audited as ``actor``,
    also when it fails midway."""
    async with audited(ledger, actor, "reconcile.repair", target=seller_tax_id) as audit:
        audit.detail.update({"from": date_from.isoformat(), "to": date_to.isoformat()})
        comparison = await reconcile(ledger, platform, seller_tax_id, date_from, date_to)
        numbers = [line.invoice_number for line in comparison["missing_on_platform"]]
        redrive = await redrive_missing(ledger, seller_tax_id, numbers)
        audit.detail.update(redriven=redrive.redriven, skipped=len(redrive.skipped))
    return comparison, redrive


def report_json(
    comparison: Comparison, seller_tax_id: str, date_from: date, date_to: date
) -> dict[str, Any]:
    return {
        "seller_tax_id": seller_tax_id,
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "generated_at": datetime.now(UTC).isoformat(),
        "counts": comparison.counts(),
        "invoices": [line.as_dict() for line in comparison.all_lines()],
    }


def write_report(
    path: Path, comparison: Comparison, seller_tax_id: str, date_from: date, date_to: date
) -> None:
    """``.json``: the summary and every invoice; ``.csv``: one row per invoice."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        body = report_json(comparison, seller_tax_id, date_from, date_to)
        path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    elif suffix == ".csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for line in comparison.all_lines():
            writer.writerow(line.as_dict())
        path.write_text(out.getvalue(), encoding="utf-8")
    else:
        raise ValueError(f"report file must end in .json or .csv, not {path.name!r}")
