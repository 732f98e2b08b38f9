"""The audit trail: every mutating action, with its actor, target and outcome."""

from __future__ import annotations

import getpass
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from streams.errors import InvoiceSyncError
from streams.ledger.store import Ledger

log = logging.getLogger(__name__)


def cli_actor() -> str:
    """The OS user behind a CLI command."""
    return f"cli:{getpass.getuser()}"


def failure_reason(exc: BaseException) -> str:
    """One line for an audit outcome: our own message, else the exception's class and text."""
    if isinstance(exc, InvoiceSyncError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass
class Outcome:
    """What an :func:`audited` block reports: set ``outcome`` and fill ``detail`` as it goes."""

    outcome: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any] | None


class AuditLog:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def record(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """``detail`` must never hold a secret: callers pass names and counts, not tokens."""
        async with self._ledger.connection() as conn:
            await conn.execute(
                "INSERT INTO audit_log (actor, action, target, outcome, detail) "
                "VALUES ($1, $2, $3, $4, $5::jsonb)",
                actor, action, target, outcome,
                None if detail is None else orjson.dumps(detail).decode(),
            )  # fmt: skip

    async def entries(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first. ``outcome`` matches the start: ``failed`` finds every
        ``failed: <reason>``."""
        async with self._ledger.connection() as conn:
            rows = await conn.fetch(
                """SELECT at, actor, action, target, outcome, detail::text AS detail
                   FROM audit_log
                   WHERE ($1::timestamptz IS NULL OR at >= $1)
                     AND ($2::timestamptz IS NULL OR at < $2)
                     AND ($3::text IS NULL OR actor = $3)
                     AND ($4::text IS NULL OR action = $4)
                     AND ($5::text IS NULL OR target = $5)
                     AND ($6::text IS NULL OR starts_with(outcome, $6))
                   ORDER BY id DESC LIMIT $7""",
                since, until, actor, action, target, outcome, limit,
            )  # fmt: skip
        return [
            AuditEntry(r["at"], r["actor"], r["action"], r["target"], r["outcome"],
                       None if r["detail"] is None else orjson.loads(r["detail"]))
            for r in rows
        ]  # fmt: skip


@asynccontextmanager
async def audited(
    ledger: Ledger, actor: str, action: str, *, target: str | None = None
) -> AsyncIterator[Outcome]:
    """Audit the mutation in the block, also when it fails midway (``failed: <reason>``).

    When the audit row itself cannot be written after a failure (typically: the ledger
    is the thing that failed), the original error is what the caller sees.
    """
    outcome = Outcome()
    try:
        yield outcome
    except BaseException as exc:
        outcome.outcome = f"failed: {failure_reason(exc)}"
        try:
            await AuditLog(ledger).record(actor, action, target=target, outcome=outcome.outcome,
                                          detail=outcome.detail or None)  # fmt: skip
        except (InvoiceSyncError, OSError) as audit_exc:
            log.warning("could not audit failed %s by %s: %s", action, actor, audit_exc)
        raise
    await AuditLog(ledger).record(actor, action, target=target, outcome=outcome.outcome,
                                  detail=outcome.detail or None)  # fmt: skip
