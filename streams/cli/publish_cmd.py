"""``invoice-sync publish --sample N`` and ``invoice-sync import FILE``: getting invoices in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import click
from aiokafka.errors import KafkaError

from streams.cli.ledger_access import open_ledger
from streams.cli.settings_option import load_settings
from streams.client.importing import (
    ImportFileError,
    ReadyEvent,
    RowError,
    check_invoices,
    parse_file,
)
from streams.client.publisher import InvoicePublisher, PublishedEvent
from streams.demo.feed import generate
from streams.errors import InvoiceSyncError
from streams.security.audit import audited, cli_actor
from streams.settings import Settings
from streams.validation.rules import DomainRules
from streams.validation.today import beijing_today

#: sends in flight at once; each still waits for its own acknowledgement
WINDOW = 200
IMPORT_SOURCE = "invoice-sync-import"


def _send_all(
    settings: Settings,
    label: str,
    sends: Sequence[Callable[[InvoicePublisher], Awaitable[PublishedEvent]]],
    *,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    """Run every send with a progress bar; each one counts once the broker acked it.

    Publishing changes what reaches the tax authority: it is audited (``action`` on
    ``target``), with the count acked so far also when it fails midway."""

    async def run() -> None:
        async with (
            open_ledger(settings) as ledger,
            audited(ledger, cli_actor(), action, target=target) as outcome,
        ):
            outcome.detail.update(detail, published=0)
            async with InvoicePublisher(settings) as publisher:
                with click.progressbar(length=len(sends), label=label) as bar:
                    for start in range(0, len(sends), WINDOW):
                        chunk = sends[start : start + WINDOW]
                        # Every send of the chunk ends before a failure is raised, so the
                        # audited count is what the broker really holds.
                        done = await asyncio.gather(*(send(publisher) for send in chunk),
                                                    return_exceptions=True)  # fmt: skip
                        failed = [e for e in done if isinstance(e, BaseException)]
                        outcome.detail["published"] += len(done) - len(failed)
                        bar.update(len(chunk))
                        if failed:
                            raise failed[0]

    try:
        asyncio.run(run())
    except KafkaError as exc:
        raise click.ClickException(f"Kafka at {settings.kafka_bootstrap} failed: {exc}") from exc
    except InvoiceSyncError as exc:
        raise click.ClickException(exc.message) from exc


@click.command()
@click.option("--sample", "count", type=click.IntRange(1), required=True,
              help="Publish N generated invoices from five demo sellers.")  # fmt: skip
@click.option(
    "--realistic",
    is_flag=True,
    help="Mix in the demo feed's invalid and re-sent invoices (a few percent).",
)
@click.option(
    "--run-id",
    type=click.IntRange(0),
    default=None,
    help="Makes invoice numbers unique per run; default: from the clock.",
)
@click.option("--seed", default=7, show_default=True, help="Random seed of the generator.")
def publish(count: int, realistic: bool, run_id: int | None, seed: int) -> None:
    """Publish generated sample invoices to invoices.issued (demo and load).

    By default every invoice is valid (blue ones and a few red-letter ones reversing
    them), so each should end confirmed; --realistic adds the bad ones the demo uses.
    """
    settings = load_settings()
    run = run_id if run_id is not None else int(time.time() * 1000) % 10**9
    fractions = {} if realistic else {"invalid_fraction": 0.0, "resend_fraction": 0.0}
    items = list(generate(count, today=beijing_today(), run_id=run, seed=seed, **fractions))
    sends = [
        (lambda p, key=item.key, value=item.value: p.publish_raw(key, value)) for item in items
    ]
    _send_all(settings, f"publishing {count} to {settings.issued_topic}", sends,
              action="publish.sample", target=settings.issued_topic,
              detail={"requested": count, "run_id": run, "realistic": realistic})  # fmt: skip
    bad = sum(item.defect is not None for item in items)
    click.echo(f"published {len(items)} invoices (run id {run}"
               + (f", {bad} invalid on purpose" if bad else "") + ")")  # fmt: skip


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _report(errors: list[RowError], path: Path) -> None:
    for error in errors:
        click.echo(f"{path.name}: {error}", err=True)


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Publish the valid invoices even if some rows are bad (bad ones are listed).",
)
@click.option("--check", "check_only", is_flag=True, help="Validate only; publish nothing.")
@click.option("--source", default=IMPORT_SOURCE, show_default=True,
              help="The events' source field.")  # fmt: skip
def import_cmd(file: Path, skip_invalid: bool, check_only: bool, source: str) -> None:
    """Publish invoices from FILE.csv or FILE.jsonl (issued by hand while a system was down).

    Every row is checked first, as the worker would check it. If any row is bad, all
    problems are listed with their row numbers and nothing is published (unless
    --skip-invalid). Formats and columns: docs/import.md.
    """
    settings = load_settings()
    try:
        parsed, errors = parse_file(file)
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from exc
    ready, problems = check_invoices(
        parsed, DomainRules.from_settings(settings), today=beijing_today(), source=source
    )
    errors = sorted(errors + problems)
    if not parsed and not errors:
        raise click.ClickException(f"{file} holds no invoices")
    if errors:
        _report(errors, file)
        bad_rows = len({e.row for e in errors})
        if not skip_invalid or check_only:
            raise click.ClickException(
                f"{_n(len(errors), 'problem')} on {_n(bad_rows, 'row')} of {file.name}; "
                "nothing was published"
                + ("" if check_only else f" (--skip-invalid publishes the {len(ready)} valid ones)")
            )
        click.echo(f"skipping the invalid rows; {len(ready)} invoices are valid", err=True)
    if check_only:
        click.echo(f"{file.name}: {len(ready)} invoices, all valid")
        return
    sends = [_event_send(item) for item in ready]
    _send_all(settings, f"publishing {len(ready)} to {settings.issued_topic}", sends,
              action="import", target=str(file),
              detail={"invoices": len(ready), "skipped_rows": len(errors)})  # fmt: skip
    click.echo(f"published {len(ready)} invoices from {file.name}")


def _event_send(item: ReadyEvent) -> Callable[[InvoicePublisher], Awaitable[PublishedEvent]]:
    return lambda publisher: publisher.publish_event(item.event)
