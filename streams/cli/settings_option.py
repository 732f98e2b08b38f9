"""Reading the settings for a command, turning a bad setting into a clear message, and
setting up its logging as the worker's (secrets redacted, buyer data masked)."""

from __future__ import annotations

import logging

import click
from pydantic import ValidationError

from streams.observability.logs import configure_logging
from streams.settings import Settings


def _not_aiokafka(record: logging.LogRecord) -> bool:
    return not record.name.startswith("aiokafka")


def load_settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"INVOICE_SYNC_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise click.UsageError(f"bad settings: {problems}") from exc
    # A command's output is its answer; the libraries' INFO chatter (topic metadata,
    # group joins) is only wanted when asked for with INVOICE_SYNC_LOG_LEVEL.
    explicit = "log_level" in settings.model_fields_set
    handler = configure_logging(settings.log_level if explicit else "WARNING",
                                settings.log_json, secrets=settings.secret_values())  # fmt: skip
    if not explicit:
        # Our commands say themselves when the broker cannot be reached, in one line.
        handler.addFilter(_not_aiokafka)
    return settings
