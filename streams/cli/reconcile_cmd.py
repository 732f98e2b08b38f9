"""``invoice-sync reconcile`` (ledger against the platform) and ``sweep`` (stuck invoices)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from streams.cli.ledger_access import open_ledger
from streams.cli.settings_option import load_settings
from streams.errors import InvoiceSyncError
from streams.ledger.records import InvoiceRecord
from streams.platform.client import PlatformClient
from streams.reconcile.compare import BUCKETS, DISCREPANCIES, Comparison
from streams.reconcile.repair import Redrive
from streams.reconcile.run import reconcile as run_reconcile
from streams.reconcile.run import reconcile_and_repair, write_report
from streams.reconcile.sweep import SweepResult
from streams.reconcile.sweep import sweep as run_sweep
from streams.security.audit import cli_actor

_DAY = click.DateTime(formats=["%Y-%m-%d"])
#: discrepancy lines printed per bucket (the report file has them all)
_SHOWN = 20


@click.command()
@click.option("--seller", "seller_tax_id", required=True, help="Seller tax id.")
@click.option("--from", "date_from", type=_DAY, required=True, help="First issue date, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DAY, required=True, help="Last issue date, YYYY-MM-DD.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every invoice and its bucket to FILE.json or FILE.csv.")  # fmt: skip
@click.option(
    "--repair", is_flag=True, help="Re-send invoices confirmed but missing on the platform."
)
def reconcile(
    seller_tax_id: str, date_from: datetime, date_to: datetime, report: Path | None, repair: bool
) -> None:
    """Compare the ledger with the platform's list for a seller and issue-date range.

    Buckets: matching; missing_on_platform (confirmed in the ledger, not on the
    platform); unknown_to_ledger (on the platform only); amounts_differ (total with
    tax); not_confirmed_in_ledger (on the platform while the ledger has it in flight or
    failed). --repair sets missing_on_platform invoices back to SUBMITTING so a running
    worker re-posts their stored payload within seconds; the others are only reported
    (unknown_to_ledger: issued outside this pipeline; amounts_differ: needs a red-letter
    invoice). Every repair is in the invoice history and the audit trail.
    """
    first, last = date_from.date(), date_to.date()
    if first > last:
        raise click.BadParameter("--from must not be after --to", param_hint="--from")
    if report is not None and report.suffix.lower() not in (".json", ".csv"):
        raise click.BadParameter("must end in .json or .csv", param_hint="--report")
    settings = load_settings()

    async def _run() -> tuple[Comparison, Redrive | None]:
        async with open_ledger(settings) as ledger, PlatformClient.from_settings(settings) as pc:
            if repair:
                return await reconcile_and_repair(ledger, pc, seller_tax_id, first, last,
                                                  actor=cli_actor())  # fmt: skip
            return await run_reconcile(ledger, pc, seller_tax_id, first, last), None

    try:
        result, redrive = asyncio.run(_run())
    except InvoiceSyncError as exc:
        raise click.ClickException(f"reconcile failed: {exc.message}") from exc
    _summary(result, seller_tax_id, f"{first} to {last}")
    if report is not None:
        write_report(report, result, seller_tax_id, first, last)
        click.echo(f"report: {report}")
    if redrive is not None:
        click.echo(f"repair: {len(redrive.redriven)} invoices set back to SUBMITTING; a running "
                   "worker re-posts them from the stored payload")  # fmt: skip
        for number, why in redrive.skipped:
            click.echo(f"  not re-driven: {number}: {why}")


def _summary(result: Comparison, seller: str, period: str) -> None:
    click.echo(f"seller {seller}, issued {period}")
    counts = result.counts()
    for bucket in BUCKETS:
        click.echo(f"  {bucket:<26}{counts[bucket]:>8}")
    for bucket in DISCREPANCIES:
        lines = result[bucket]
        if lines:
            click.echo(f"{bucket}:")
        for line in lines[:_SHOWN]:
            click.echo(
                f"  {line.invoice_number}  {line.issue_date or '-'}  "
                f"ledger {line.ledger_state or '-'} {line.ledger_total or '-'}  "
                f"platform {line.platform_ref or '-'} {line.platform_total or '-'}"
            )
        if len(lines) > _SHOWN:
            click.echo(f"  ... and {len(lines) - _SHOWN} more (see --report)")
    if result.clean:
        click.echo("ledger and platform agree")


@click.command()
@click.option("--older-than", type=click.FloatRange(min=0), default=900.0, show_default=True,
              help="Seconds an invoice must have been unchanged to count as stuck.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only report; re-drive nothing.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="At most this many invoices, oldest first.")  # fmt: skip
@click.option("--seller", "seller_tax_id", help="Only this seller's invoices.")
def sweep(older_than: float, dry_run: bool, limit: int, seller_tax_id: str | None) -> None:
    """Find invoices stuck in RECEIVED, SUBMITTING or PENDING, report and re-drive them.

    PENDING: the receipt is polled once. RECEIVED and SUBMITTING: the stored payload is
    re-published to invoices.issued (a re-send of an unfinished invoice is processed
    afresh; the platform's duplicate check keeps it from being stored twice).

    A running worker already finishes most of these on its own, in a loop: parked
    invoices when due, attempts left by a dead worker, pending receipts. The sweep is
    the same check on demand.
    """
    settings = load_settings()

    async def _run() -> SweepResult:
        async with open_ledger(settings) as ledger:
            return await run_sweep(ledger, settings, older_than, actor=cli_actor(),
                                   dry_run=dry_run, limit=limit,
                                   seller_tax_id=seller_tax_id)  # fmt: skip

    try:
        result = asyncio.run(_run())
    except InvoiceSyncError as exc:
        raise click.ClickException(f"sweep failed: {exc.message}") from exc
    if not result.stuck:
        click.echo(f"no invoice stuck for more than {older_than:.0f}s")
        return
    _stuck_table(result.stuck)
    if dry_run:
        click.echo(f"{len(result.stuck)} stuck (dry run: nothing re-driven)")
        return
    click.echo(f"re-published {len(result.republished.redriven)}; polled "
               f"{result.receipts_polled} receipts, {result.receipts_settled} settled")  # fmt: skip
    for key, why in result.republished.skipped:
        click.echo(f"  not re-driven: {key}: {why}")


def _stuck_table(records: list[InvoiceRecord]) -> None:
    now = datetime.now(UTC)
    click.echo(f"{'seller':<20}{'invoice':<22}{'state':<12}{'stuck for':>10}  receipt")
    for r in records:
        age = (now - r.updated_at).total_seconds() if r.updated_at else 0.0
        click.echo(f"{r.key.seller_tax_id:<20}{r.key.invoice_number:<22}{r.state.value:<12}"
                   f"{age:>9.0f}s  {r.receipt_id or '-'}")  # fmt: skip
