"""Entry point of the ``invoice-sync`` console script."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """invoice-sync: every issued invoice reaches the tax platform exactly once."""
