"""The ledger for a CLI command: the configured database, or the local demo's one.

Without ``INVOICE_SYNC_DATABASE_URL``, and with a local ledger in the data dir
(left by ``make run``), the command starts that embedded PostgreSQL for the
duration of the lookup, so "where is invoice X?" still answers after the demo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import click

from streams.ledger.store import Ledger
from streams.local.postgres import EmbeddedPostgres
from streams.local.processes import LocalStackError
from streams.security.crypto import cipher_from
from streams.settings import Settings


@asynccontextmanager
async def open_ledger(settings: Settings, *, check_schema: bool = True) -> AsyncIterator[Ledger]:
    async with AsyncExitStack() as stack:
        url = settings.database_url.get_secret_value()
        local = settings.data_dir / "postgres"
        if "database_url" not in settings.model_fields_set and (local / "PG_VERSION").exists():
            pg = EmbeddedPostgres(local)
            try:
                await stack.enter_async_context(pg)
            except LocalStackError as exc:
                raise click.ClickException(
                    f"the local ledger in {local} is in use ({exc}); while `invoice-sync up` "
                    "runs, set INVOICE_SYNC_DATABASE_URL to the URL it printed"
                ) from exc
            url = pg.url
        ledger = await stack.enter_async_context(
            Ledger(url, worker_id="cli", cipher=cipher_from(settings))
        )
        missing = await ledger.pending_migrations() if check_schema else []
        if missing and url != settings.database_url.get_secret_value():
            # The demo's own ledger, left by an older checkout: bring it up to date.
            await ledger.migrate()
        elif missing:
            raise click.ClickException(
                f"the ledger database lacks migration {missing[0].version:04d}_"
                f"{missing[0].name} (and {len(missing) - 1} more) that this version needs: "
                "run `invoice-sync migrate` (the worker also does at start)"
            )
        yield ledger
