"""Entry point of the ``invoice-sync`` console script."""

from __future__ import annotations

import asyncio

import asyncpg
import click

from streams.cli.demo_cmd import demo, up
from streams.cli.dlq_cmd import dlq
from streams.cli.ledger_access import open_ledger
from streams.cli.lookup_cmd import invoices, status
from streams.cli.publish_cmd import import_cmd, publish
from streams.cli.reconcile_cmd import reconcile, sweep
from streams.cli.sandbox_cmd import sandbox
from streams.cli.security_cmd import audit, rekey, retention, tokens
from streams.cli.settings_option import load_settings
from streams.errors import InvoiceSyncError
from streams.observability.logs import redact
from streams.security.audit import failure_reason


class _Cli(click.Group):
    """Every command's failures as one clear line on stderr and exit code 1: a database
    that is away or a duplicate name is not a bug, and a traceback helps nobody."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (InvoiceSyncError, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:  # fmt: skip
            # redact: a connection error may quote the URL, password included.
            raise click.ClickException(redact(failure_reason(exc), ())) from exc


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """invoice-sync: every issued invoice reaches the tax platform exactly once.

    Settings come from INVOICE_SYNC_* environment variables (see the README);
    the defaults run against a local stack.
    """


@cli.command()
def worker() -> None:
    """Run the stream processor against the configured Kafka, PostgreSQL and platform.

    Needs INVOICE_SYNC_KAFKA_BOOTSTRAP, INVOICE_SYNC_DATABASE_URL,
    INVOICE_SYNC_PLATFORM_URL and the platform credentials. Creates missing topics
    and applies ledger migrations at start. Stops cleanly on SIGINT/SIGTERM.
    """
    from streams.worker.run import run_worker

    run_worker(load_settings())


@cli.command()
def migrate() -> None:
    """Apply pending ledger migrations to INVOICE_SYNC_DATABASE_URL and exit."""
    settings = load_settings()

    async def _run() -> None:
        async with open_ledger(settings, check_schema=False) as ledger:
            applied = await ledger.migrate()
        if applied:
            for m in applied:
                click.echo(f"applied {m.version:04d}_{m.name}")
        else:
            click.echo("ledger schema is up to date")

    asyncio.run(_run())


cli.add_command(sandbox)
cli.add_command(demo)
cli.add_command(up)
cli.add_command(status)
cli.add_command(invoices)
cli.add_command(reconcile)
cli.add_command(sweep)
cli.add_command(tokens)
cli.add_command(audit)
cli.add_command(rekey)
cli.add_command(retention)
cli.add_command(dlq)
cli.add_command(publish)
cli.add_command(import_cmd)
