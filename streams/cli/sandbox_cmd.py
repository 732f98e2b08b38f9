"""``invoice-sync sandbox``: the tax-platform sandbox as a standalone server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from typing import Any

import click

from streams.sandbox.faults import PROFILES, Faults
from streams.sandbox.server import SandboxServer, serve

log = logging.getLogger("streams.sandbox")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _SecondsOrNever(click.ParamType):
    name = "SECONDS|never"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "never" or isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number of seconds nor 'never'", param, ctx)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Keep loopback unless others must reach it: the "
    "admin endpoints have no authentication.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
@click.option("--app-id", help="App id clients sign with. [default: INVOICE_SYNC_PLATFORM_APP_ID]")
@click.option(
    "--app-secret", help="HMAC secret of that app id. [default: INVOICE_SYNC_PLATFORM_APP_SECRET]"
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="none",
    show_default=True,
    help="Named set of faults; 'demo' adds a few percent of transient faults and "
    "some slow 202s. Fault options below override it.",
)
@click.option(
    "--admin/--no-admin",
    default=False,
    show_default=True,
    help="Serve /_sandbox/ (GET/PATCH faults, stats, invoices, reset).",
)
@click.option("--latency-ms", type=float, help="Fixed delay before every API answer.")
@click.option("--latency-jitter-ms", type=float, help="Random extra delay, 0 to this.")
@click.option(
    "--async-fraction",
    "accept_async_fraction",
    type=float,
    help="Fraction of uploads answered 202 with a receipt.",
)
@click.option(
    "--processing-seconds",
    "receipt_processing_seconds",
    type=_SecondsOrNever(),
    help="How long a receipt stays PROCESSING; 'never' keeps it there. [default: 1]",
)
@click.option(
    "--server-error-fraction", type=float, help="Fraction of API requests answered 500, 502 or 504."
)
@click.option(
    "--in-doubt-fraction", type=float, help="Fraction of uploads stored but never answered."
)
@click.option(
    "--in-doubt-mode",
    type=click.Choice(["hang", "drop"]),
    help="Never answer by holding the request open, or by dropping the connection. [default: hang]",
)
@click.option(
    "--in-doubt-hang-seconds",
    type=float,
    help="How long 'hang' holds a request; more than any client timeout. [default: 60]",
)
@click.option(
    "--maintenance/--no-maintenance",
    default=None,
    help="Answer 503 MAINTENANCE (health too) from the start.",
)
@click.option(
    "--maintenance-retry-after", type=float, help="Retry-After seconds sent with --maintenance."
)
@click.option(
    "--maintenance-window",
    "maintenance_windows",
    multiple=True,
    metavar="START/END",
    help="Planned outage, RFC 3339 times with offset, e.g. "
    "2026-11-20T02:00:00+08:00/2026-11-20T02:30:00+08:00. Repeatable.",
)
@click.option(
    "--quota-per-second",
    type=click.IntRange(min=1),
    help="Requests per second each app id may make before 429.",
)
@click.option("--seed", type=int, help="Seed of the fault dice, for a reproducible run.")
def sandbox(
    host: str,
    port: int,
    app_id: str | None,
    app_secret: str | None,
    profile: str,
    admin: bool,
    **fault_options: Any,
) -> None:
    """Serve the tax-platform sandbox: the platform's HTTP contract with switchable faults.

    Uploads are stored exactly once per (seller tax id, invoice number) and every
    POST is counted; 422 rejections follow from the invoice's data. Point a worker
    at it with INVOICE_SYNC_PLATFORM_URL and the same app id and secret. With
    --admin, faults can be changed while it runs, e.g.

    \b
        curl -X PATCH localhost:8080/_sandbox/faults -d '{"server_error_fraction": 0.2}'

    Stops cleanly on Ctrl-C or SIGTERM.
    """
    if app_id is None or app_secret is None:
        from streams.cli.settings_option import load_settings

        settings = load_settings()
        app_id = app_id or settings.platform_app_id
        app_secret = app_secret or settings.platform_app_secret.get_secret_value()
    changes = {name: value for name, value in fault_options.items() if value not in (None, ())}
    if changes.get("receipt_processing_seconds") == "never":
        changes["receipt_processing_seconds"] = None
    try:
        faults = Faults.profile(profile, **changes)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if admin and host not in _LOOPBACK:
        log.warning(
            "admin endpoints are unauthenticated and bound to %s: anyone who can "
            "reach it can change faults and wipe the store",
            host,
        )
    asyncio.run(_run(host, port, {app_id: app_secret}, faults, admin))


async def _run(host: str, port: int, apps: Mapping[str, str], faults: Faults, admin: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def started(server: SandboxServer) -> None:
        admin_note = f", admin at {server.url}/_sandbox/" if admin else ""
        log.info(
            "tax-platform sandbox serving on %s (app id %r%s); faults: %s",
            server.url,
            next(iter(apps)),
            admin_note,
            _active(faults),
        )

    serving = asyncio.create_task(
        serve(host, port, apps=apps, faults=faults, admin=admin, on_started=started)
    )
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        stopping.cancel()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
    try:
        await serving
    except asyncio.CancelledError:
        log.info("sandbox stopped")
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from exc


def _active(faults: Faults) -> str:
    defaults = Faults().to_json()
    changed = {k: v for k, v in faults.to_json().items() if defaults[k] != v}
    return ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) or "none"
