"""``invoice-sync demo`` and ``invoice-sync up``: the local stack, one command each."""

from __future__ import annotations

import asyncio

import click

from streams.cli.settings_option import load_settings


@click.command()
@click.option("--count", default=1200, show_default=True, help="Invoices in the demo feed.")
@click.option("--timeout", default=300.0, show_default=True,
              help="Seconds to wait for every invoice to reach an outcome.")  # fmt: skip
def demo(count: int, timeout: float) -> None:
    """Run the whole pipeline locally with a demo feed, print a summary, stop.

    Starts embedded PostgreSQL and Kafka (Tansu), the platform sandbox with a few
    transient faults, and a worker; publishes COUNT realistic invoices (a few
    invalid), shows progress, then a summary. Leaves no process behind.
    """
    from streams.demo.runner import run_demo

    raise SystemExit(asyncio.run(run_demo(load_settings(), count=count, serve=False,
                                          timeout=timeout)))  # fmt: skip


@click.command()
@click.option("--count", default=1200, show_default=True, help="Invoices in the demo feed.")
@click.option("--timeout", default=300.0, show_default=True,
              help="Seconds to wait for the feed to reach an outcome.")  # fmt: skip
def up(count: int, timeout: float) -> None:
    """Like ``demo``, then keep everything serving until Ctrl-C."""
    from streams.demo.runner import run_demo

    raise SystemExit(asyncio.run(run_demo(load_settings(), count=count, serve=True,
                                          timeout=timeout)))  # fmt: skip
