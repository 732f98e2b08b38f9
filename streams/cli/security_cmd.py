"""``invoice-sync tokens``, ``audit``, ``rekey``, ``retention``: access and what is kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import click
import orjson

from streams.cli.ledger_access import open_ledger
from streams.cli.settings_option import load_settings
from streams.ledger.store import Ledger
from streams.security.audit import AuditLog, cli_actor
from streams.security.crypto import new_key
from streams.security.tokens import ROLES, Role, TokenStore, create_token, revoke_token

T = TypeVar("T")
#: the most audit entries one listing prints (narrow with the filters to see older ones)
MAX_AUDIT_LIMIT = 10_000


def _with_ledger(work: Callable[[Ledger], Awaitable[T]]) -> T:
    settings = load_settings()

    async def run() -> T:
        async with open_ledger(settings) as ledger:
            return await work(ledger)

    return asyncio.run(run())


@click.group()
def tokens() -> None:
    """Bearer tokens for the worker's HTTP API (roles: viewer < operator < admin)."""


@tokens.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--name", required=True, help="Who or what holds it (unique; shown in the audit).")
def tokens_create(role: Role, name: str) -> None:
    """Create a token and print it once: only a salted hash is kept."""

    token = _with_ledger(lambda ledger: create_token(ledger, name, role, actor=cli_actor()))
    click.echo(token)
    click.echo(f"(token {name!r}, role {role}: store it now, it cannot be shown again)", err=True)


@tokens.command("list")
def tokens_list() -> None:
    """List tokens (never their secrets)."""
    listed = _with_ledger(lambda ledger: TokenStore(ledger).list())
    if not listed:
        click.echo("no tokens; create one with `invoice-sync tokens create`")
    for t in listed:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        click.echo(f"{t.name:<24} {t.role:<9} created {t.created_at:%Y-%m-%d %H:%M}  {state}")


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke the token called NAME; requests with it get 401 from now on."""

    if not _with_ledger(lambda ledger: revoke_token(ledger, name, actor=cli_actor())):
        raise click.ClickException(f"no active token called {name!r}")
    click.echo(f"revoked {name}")


@click.command()
@click.option("--since", type=click.DateTime(), help="From this time (local, inclusive).")
@click.option("--until", type=click.DateTime(), help="Before this time.")
@click.option("--actor", help="Only this actor, e.g. cli:alice or token:ops-bot.")
@click.option("--action", help="Only this action, e.g. dlq.replay, token.create, import.")
@click.option("--target", help="Only this target, e.g. a token name, seller tax id or file.")
@click.option("--outcome", help="Only outcomes starting so: ok, or failed (any reason).")
@click.option("--limit", type=click.IntRange(1, MAX_AUDIT_LIMIT), default=100, show_default=True,
              help="How many entries, newest first.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def audit(
    since: datetime | None, until: datetime | None, actor: str | None, action: str | None,
    target: str | None, outcome: str | None, limit: int, as_json: bool,
) -> None:  # fmt: skip
    """The audit trail: every mutating action, who did it, when, and how it ended."""
    since_aware = since.astimezone() if since else None
    until_aware = until.astimezone() if until else None
    entries = _with_ledger(
        lambda ledger: AuditLog(ledger).entries(
            since=since_aware, until=until_aware, actor=actor, action=action, target=target,
            outcome=outcome, limit=limit,
        )
    )  # fmt: skip
    for e in entries:
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "outcome": e.outcome,
                        "detail": e.detail,
                    }
                ).decode()
            )
        else:
            click.echo(
                f"{e.at:%Y-%m-%d %H:%M:%S%z}  {e.actor:<20} {e.action:<16} "
                f"{e.target or '-':<30} {e.outcome}"
            )
    if not entries and not as_json:
        click.echo("no audit entries match")


@click.command()
@click.option("--new-key", "show_key", is_flag=True, help="Print a fresh key to add and exit.")
def rekey(show_key: bool) -> None:
    """Re-encrypt stored payloads with the current INVOICE_SYNC_PAYLOAD_KEY.

    To rotate: put a new `id:key` first in INVOICE_SYNC_PAYLOAD_KEY, keep the old one
    after it, run this, then drop the old key.
    """
    if show_key:
        click.echo(new_key())
        return

    async def work(ledger: Ledger) -> int:
        total = 0
        while count := await ledger.rekey():
            total += count
            click.echo(f"re-encrypted {total} payloads …", err=True)
        await AuditLog(ledger).record(cli_actor(), "payload.rekey", detail={"payloads": total})
        return total

    click.echo(f"done: {_with_ledger(work)} payloads now under the current key")


@click.command()
@click.option(
    "--days", type=click.IntRange(min=1), help="Default: INVOICE_SYNC_PAYLOAD_RETENTION_DAYS."
)
def retention(days: int | None) -> None:
    """Drop the payloads (never the ledger rows) of invoices confirmed over DAYS ago."""
    days = days or load_settings().payload_retention_days
    if days is None:
        raise click.UsageError("give --days or set INVOICE_SYNC_PAYLOAD_RETENTION_DAYS")
    keep = days

    async def work(ledger: Ledger) -> int:
        dropped = await ledger.drop_old_payloads(keep)
        await AuditLog(ledger).record(cli_actor(), "payload.retention",
                                      detail={"days": keep, "dropped": dropped})  # fmt: skip
        return dropped

    click.echo(f"dropped {_with_ledger(work)} payloads of invoices confirmed over {days} days ago")
