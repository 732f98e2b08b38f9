"""Reading the settings for a command, turning a bad setting into a clear message."""

from __future__ import annotations

import click
from pydantic import ValidationError

from streams.settings import Settings


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"INVOICE_SYNC_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise click.UsageError(f"bad settings: {problems}") from exc
