"""``invoice-sync status`` (where is invoice X, what next) and ``invoices`` (a seller's
history, paged)."""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import date, datetime
from typing import Any

import click
import orjson

from streams.api.views import dead_letters_view, invoice_lookup, record_view
from streams.cli.ledger_access import open_ledger
from streams.cli.settings_option import load_settings
from streams.ledger.queries import MAX_PAGE_SIZE, BadCursorError, invoice_page
from streams.ledger.records import InvoiceRecord
from streams.ledger.states import State


@click.command()
@click.argument("invoice_number")
@click.option(
    "--seller", "seller_tax_id", help="Seller tax id, when several sellers share the number."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(invoice_number: str, seller_tax_id: str | None, as_json: bool) -> None:
    """Show an invoice's state, platform reference, every state change, its dead letter
    (topic, partition, offset, reason, time) if it has one, and the next step."""
    settings = load_settings()

    async def _run() -> int:
        async with open_ledger(settings) as ledger:
            records = await ledger.find(invoice_number, seller_tax_id)
            if not records:
                # A message too broken to be recorded is still dead-lettered under its key.
                letters = await dead_letters_view(settings, invoice_number, seller_tax_id)
                _not_in_ledger(invoice_number, seller_tax_id, letters)
                return 1
            views = [await invoice_lookup(ledger, settings, record) for record in records]
        if as_json:
            click.echo(orjson.dumps(views, option=orjson.OPT_INDENT_2).decode())
            return 0
        for view in views:
            _print(view)
        return 0

    raise SystemExit(asyncio.run(_run()))


def _not_in_ledger(number: str, seller: str | None, letters: dict[str, Any]) -> None:
    of_seller = f" of seller {seller}" if seller else ""
    click.echo(f"invoice {number}{of_seller} is not in the ledger: it never reached the "
               "pipeline. Check that billing published it, and the dead-letter topic for "
               f"unreadable messages: `invoice-sync dlq list --invoice {number}`.",
               err=True)  # fmt: skip
    _print_letters(letters, err=True)


def _print_letters(letter: dict[str, Any], *, err: bool = False) -> None:
    for r in letter["records"]:
        field = f" (field {r['field']})" if r["field"] else ""
        click.echo(f"  dead letter:  {r['topic']} partition {r['partition']} offset "
                   f"{r['offset']}, {r['reason_code']}{field} at {r['failed_at']}: "
                   f"{r['reason']}", err=err)  # fmt: skip
    if letter["note"]:
        click.echo(f"  dead letter:  {letter['note']}", err=err)


def _print(view: dict[str, Any]) -> None:
    click.echo(f"invoice {view['invoice_number']} of seller {view['seller_tax_id']}")
    for label in ("state", "platform_ref", "accepted_at", "attempts", "error_code",
                  "error_field", "error_message", "receipt_id"):  # fmt: skip
        if view.get(label) is not None:
            click.echo(f"  {label:<14}{view[label]}")
    click.echo("  history:")
    for h in view["history"]:
        reason = f" [{h['reason_code']}]" if h["reason_code"] else ""
        detail = f" {h['detail']}" if h["detail"] else ""
        click.echo(f"    {h['at']}  {h['from_state'] or '-'} -> {h['to_state']}{reason}{detail}")
    letter = view.get("dead_letter")
    if letter is not None:
        if not letter["records"] and not letter["note"]:
            click.echo(f"  dead letter:  reason {letter['reason_code']}, not on the DLQ topic "
                       f"(yet); see `{letter['command']}`")  # fmt: skip
        _print_letters(letter)
    click.echo(f"  next step: {view['next_step']}")


_DAY = click.DateTime(formats=["%Y-%m-%d"])
_TABLE = ("invoice_number", "issue_date", "state", "total_with_tax", "platform_ref", "error_code")


@click.command()
@click.option("--seller", "seller_tax_id", required=True, help="Seller tax id.")
@click.option("--from", "date_from", type=_DAY, required=True, help="First issue date, YYYY-MM-DD.")
@click.option("--to", "date_to", type=_DAY, required=True, help="Last issue date, YYYY-MM-DD.")
@click.option("--state", type=click.Choice([s.value for s in State]), help="Only this state.")
@click.option("--page-size", type=click.IntRange(1, MAX_PAGE_SIZE), default=100, show_default=True,
              help="Invoices per page.")  # fmt: skip
@click.option("--after", "cursor", help="Start after this cursor (printed with each page).")
@click.option("--all", "every_page", is_flag=True, help="Every page, not just one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
def invoices(
    seller_tax_id: str, date_from: datetime, date_to: datetime, state: str | None,
    page_size: int, cursor: str | None, every_page: bool, as_json: bool, as_csv: bool,
) -> None:  # fmt: skip
    """A seller's invoices by issue date, across months and years, a page at a time.

    Ordered by issue date, then number. Each page ends with the cursor of the next
    (`--after CURSOR`); `--all` pages through everything. The worker's HTTP API serves
    the same at GET /invoices.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    first, last = date_from.date(), date_to.date()
    if first > last:
        raise click.BadParameter("--from must not be after --to", param_hint="--from")
    settings = load_settings()

    async def _run() -> tuple[list[InvoiceRecord], str | None]:
        records: list[InvoiceRecord] = []
        after = cursor
        async with open_ledger(settings) as ledger:
            while True:
                page = await invoice_page(ledger, seller_tax_id, first, last,
                                          state=State(state) if state else None,
                                          page_size=page_size, after=after)  # fmt: skip
                records += page.records
                after = page.next_cursor
                if after is None or not every_page:
                    return records, after

    try:
        records, next_cursor = asyncio.run(_run())
    except BadCursorError as exc:
        raise click.BadParameter(str(exc), param_hint="--after") from exc
    views = [record_view(r) for r in records]
    if as_json:
        body = {"items": views, "next_cursor": next_cursor}
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(views[0]) if views else _TABLE,
                                extrasaction="ignore", lineterminator="\n")  # fmt: skip
        writer.writeheader()
        writer.writerows(views)
    else:
        _table(views, seller_tax_id, first, last)
    if next_cursor is not None:
        click.echo(f"more: --after {next_cursor}", err=True)


def _table(views: list[dict[str, Any]], seller: str, first: date, last: date) -> None:
    if not views:
        click.echo(f"no invoices of seller {seller} issued {first} to {last}")
        return
    cells = [[str(v[c]) if v[c] is not None else "-" for c in _TABLE] for v in views]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(_TABLE)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(_TABLE, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    click.echo(f"{len(views)} invoices")
