"""``invoice-sync dlq list|show|replay``: work the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from aiokafka.errors import KafkaError

from streams.cli.ledger_access import open_ledger
from streams.cli.settings_option import load_settings
from streams.dlq.reader import DeadLetterRecord, DlqFilter, Position, parse_position, read_dlq
from streams.dlq.replay import (
    Replay,
    corrected_payload,
    replay_and_audit,
    select_records,
    who,
)
from streams.errors import InvalidEventError, InvoiceSyncError
from streams.security.audit import cli_actor
from streams.settings import Settings
from streams.validation.rules import DomainRules
from streams.validation.today import beijing_today

T = TypeVar("T")
#: replaying more records than this asks first (unless --yes)
CONFIRM_ABOVE = 20


class _Moment(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date or time like 2026-11-20 or 2026-11-20T09:00+08:00")
        # A time without an offset is the operator's local time.
        return moment if moment.tzinfo else moment.astimezone()


class _PositionType(click.ParamType):
    name = "PARTITION:OFFSET"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_position(str(value))
        except ValueError as exc:
            self.fail(str(exc))


POSITION = _PositionType()


def _filters(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--reason", help="Only this reason code, e.g. VALIDATION, MALFORMED."),
        click.option("--seller", help="Only this seller tax id."),
        click.option("--invoice", help="Only this invoice number."),
        click.option("--since", type=_Moment(), help="Failed at or after (local if no offset)."),
        click.option("--until", type=_Moment(), help="Failed before this time."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except KafkaError as exc:
        raise click.ClickException(f"Kafka at {settings.kafka_bootstrap} failed: {exc}") from exc
    except InvoiceSyncError as exc:
        raise click.ClickException(exc.message) from exc


def _counts(records: list[DeadLetterRecord]) -> str:
    counts = Counter(r.reason_code for r in records)
    return ", ".join(f"{code} {n}" for code, n in counts.most_common())


def _table(records: list[DeadLetterRecord]) -> None:
    click.echo(f"{'POSITION':<10} {'FAILED AT (UTC)':<19}  {'REASON':<24} {'SELLER':<19} "
               f"{'INVOICE':<21} DETAIL")  # fmt: skip
    for r in records:
        at = r.failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = f"{r.field}: {r.reason}" if r.field and r.field not in r.reason else r.reason
        click.echo(f"{r.position:<10} {at:<19}  {r.reason_code:<24} {r.seller_tax_id or '-':<19} "
                   f"{r.invoice_number or '-':<21} {detail[:80]}")  # fmt: skip


@click.group()
def dlq() -> None:
    """Work the dead-letter topic: every invoice that failed, with its reason.

    Records are named PARTITION:OFFSET on the DLQ topic (INVOICE_SYNC_TOPIC_PREFIX +
    invoices.dlq). `list` finds them, `show` prints one, `replay` re-publishes them
    to invoices.issued after a fix; every replay is recorded in the ledger.
    """


@dlq.command("list")
@_filters
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def dlq_list(
    reason: str | None, seller: str | None, invoice: str | None,
    since: datetime | None, until: datetime | None, as_json: bool,
) -> None:  # fmt: skip
    """List dead letters (oldest first per partition) and count them by reason."""
    settings = load_settings()
    selected = DlqFilter(reason, seller, invoice, since, until)
    records = _run(settings, read_dlq(settings, selected))
    if as_json:
        doc = {"total": len(records), "by_reason": dict(Counter(r.reason_code for r in records)),
               "records": [r.to_json() for r in records]}  # fmt: skip
        click.echo(orjson.dumps(doc).decode())
        return
    if not records:
        click.echo(f"no dead letters match ({selected.describe()}) on {settings.dlq_topic}")
        return
    _table(records)
    click.echo(f"\n{len(records)} dead letters: {_counts(records)}")


@dlq.command("show")
@click.argument("position", type=POSITION)
@click.option("--payload-only", is_flag=True, help="Print only the original value (to edit).")
def dlq_show(position: Position, payload_only: bool) -> None:
    """Print the dead letter at PARTITION:OFFSET: its headers and original payload.

    `--payload-only > fix.json`, edited, is what `dlq replay --payload fix.json` takes.
    """
    settings = load_settings()
    found = _run(settings, read_dlq(settings, positions=[position]))
    if not found:
        raise click.ClickException(
            f"no record at {position[0]}:{position[1]} on {settings.dlq_topic}"
        )
    record = found[0]
    try:
        payload = orjson.dumps(orjson.loads(record.value), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        payload = record.value.decode("utf-8", "replace")
    if payload_only:
        click.echo(payload)
        return
    click.echo(f"record    {settings.dlq_topic} {record.position}")
    click.echo(f"key       {record.invoice_key or '(none)'}")
    click.echo(f"stored at {record.timestamp.isoformat()}")
    click.echo("headers:")
    for name, value in record.headers:
        click.echo(f"  {name}: {value}")
    click.echo("payload (original bytes):")
    click.echo(payload)


@dlq.command("replay")
@_filters
@click.option(
    "--offset",
    "positions",
    type=POSITION,
    multiple=True,
    help="Replay this record (repeatable); instead of or on top of the filters.",
)
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
@click.option(
    "--payload",
    "payload_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A corrected event (or invoice) for the one selected record.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; publish nothing.")
@click.option("--yes", "-y", is_flag=True, help=f"Do not ask above {CONFIRM_ABOVE} records.")
def dlq_replay(
    reason: str | None, seller: str | None, invoice: str | None, since: datetime | None,
    until: datetime | None, positions: tuple[Position, ...], everything: bool,
    payload_file: Path | None, dry_run: bool, yes: bool,
) -> None:  # fmt: skip
    """Re-publish dead letters to invoices.issued, unchanged or corrected.

    Unchanged after a platform-side fix; with --payload FILE (one record), the corrected
    copy is validated first and published instead. Each gets header
    replayed_from_dlq_offset and a row in the ledger's dlq_replays. Replaying an invoice
    that is already confirmed does not upload it again.
    """
    selected = DlqFilter(reason, seller, invoice, since, until)
    if selected.empty and not positions and not everything:
        raise click.UsageError("select records with a filter, --offset P:O, or --all")
    settings = load_settings()
    found, missing = _run(settings, select_records(settings, selected, positions))
    if missing:
        where = ", ".join(f"{p}:{o}" for p, o in missing)
        raise click.ClickException(
            f"no dead letter at {where} on {settings.dlq_topic}"
            + ("" if selected.empty else " matching the filters")
        )
    if not found:
        click.echo(f"no dead letters match ({selected.describe()}); nothing to replay")
        return
    payload = None
    if payload_file is not None:
        if len(found) != 1:
            raise click.UsageError(f"--payload corrects one record; {len(found)} are selected")
        try:
            rules = DomainRules.from_settings(settings)
            payload = corrected_payload(payload_file.read_bytes(), rules, today=beijing_today())
        except InvalidEventError as exc:
            where = f" (field {exc.field})" if exc.field else ""
            raise click.ClickException(
                f"{payload_file} would fail again{where}: {exc.message}"
            ) from exc
    click.echo(f"{len(found)} dead letters selected: {_counts(found)}")
    if dry_run:
        _table(found)
        click.echo("dry run: nothing was published")
        return
    if len(found) > CONFIRM_ABOVE and not yes:
        click.confirm(f"replay {len(found)} records to {settings.issued_topic}?", abort=True)
    done = _run(settings, _replay(settings, found, payload))
    failed = [r for r in done if not r.ok]
    click.echo(f"replayed {len(done) - len(failed)} of {len(done)} to {settings.issued_topic}"
               "; follow them with `invoice-sync status NUMBER`")  # fmt: skip
    for r in failed:
        click.echo(f"  {r.record.position} not published: {r.error}", err=True)
    if failed:
        raise SystemExit(1)


async def _replay(
    settings: Settings, records: list[DeadLetterRecord], payload: tuple[bytes, bytes] | None
) -> list[Replay]:
    async with open_ledger(settings) as ledger:
        with click.progressbar(length=len(records), label="replaying") as bar:
            return await replay_and_audit(settings, ledger, records, actor=cli_actor(), by=who(),
                                          payload=payload,
                                          progress=lambda _: bar.update(1))  # fmt: skip
