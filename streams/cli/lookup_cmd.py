"""``invoice-sync status``: where is invoice X, and what should a person do next."""

from __future__ import annotations

import asyncio

import click
import orjson

from streams.api.views import history_view, record_view
from streams.cli.ledger_access import open_ledger
from streams.cli.settings_option import load_settings
from streams.ledger.records import InvoiceRecord
from streams.ledger.states import State


def next_step(record: InvoiceRecord) -> str:
    if record.state == State.CONFIRMED:
        return f"Nothing to do: the platform holds it as {record.platform_ref}."
    if record.state == State.PENDING:
        return (
            f"The platform took it in (receipt {record.receipt_id}) and is still checking it; "
            "the worker polls the receipt. If it stays pending for hours, ask the platform "
            "about the receipt."
        )
    if record.state in (State.RECEIVED, State.SUBMITTING):
        return (
            "It is being sent. If it stays like this, make sure a worker is running: a worker "
            "resumes unfinished invoices at start."
        )
    field = f" (field {record.error_field})" if record.error_field else ""
    if record.error_code in ("RETRIES_EXHAUSTED", "ORIGINAL_NOT_CONFIRMED"):
        return (
            f"It failed with {record.error_code}{field}, which a retry can fix: once the cause "
            "is gone, replay it from the dead-letter topic."
        )
    return (
        f"It was rejected with {record.error_code}{field}: {record.error_message} Correct the "
        "invoice in the billing system and send it again."
    )


@click.command()
@click.argument("invoice_number")
@click.option(
    "--seller", "seller_tax_id", help="Seller tax id, when several sellers share the number."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def status(invoice_number: str, seller_tax_id: str | None, as_json: bool) -> None:
    """Show an invoice's state, platform reference, every state change and the next step."""
    settings = load_settings()

    async def _run() -> int:
        async with open_ledger(settings) as ledger:
            records = await ledger.find(invoice_number, seller_tax_id)
            if not records:
                seller = f" of seller {seller_tax_id}" if seller_tax_id else ""
                click.echo(f"invoice {invoice_number}{seller} is not in the ledger: it never "
                           "reached the pipeline. Check that billing published it, and the "
                           "dead-letter topic for unreadable messages.", err=True)  # fmt: skip
                return 1
            views = []
            for record in records:
                view = record_view(record)
                view["history"] = [history_view(h) for h in await ledger.history(record.key)]
                view["next_step"] = next_step(record)
                views.append(view)
        if as_json:
            click.echo(orjson.dumps(views, option=orjson.OPT_INDENT_2).decode())
            return 0
        for view in views:
            _print(view)
        return 0

    raise SystemExit(asyncio.run(_run()))


def _print(view: dict[str, object]) -> None:
    click.echo(f"invoice {view['invoice_number']} of seller {view['seller_tax_id']}")
    for label in ("state", "platform_ref", "accepted_at", "attempts", "error_code",
                  "error_field", "error_message", "receipt_id"):  # fmt: skip
        if view.get(label) is not None:
            click.echo(f"  {label:<14}{view[label]}")
    click.echo("  history:")
    history = view["history"]
    assert isinstance(history, list)
    for h in history:
        reason = f" [{h['reason_code']}]" if h["reason_code"] else ""
        detail = f" {h['detail']}" if h["detail"] else ""
        click.echo(f"    {h['at']}  {h['from_state'] or '-'} -> {h['to_state']}{reason}{detail}")
    click.echo(f"  next step: {view['next_step']}")
