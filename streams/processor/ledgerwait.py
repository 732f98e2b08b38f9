"""No upload without a ledger record: a ledger call that finds the database away waits
for it, and the worker's health says so meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.errors import LedgerUnavailableError
from streams.processor.health import Health

log = logging.getLogger(__name__)
T = TypeVar("T")


class LedgerGuard:
    def __init__(
        self, health: Health, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self._health = health
        self._sleep = sleep

    async def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``'s result, retried with backoff while the database is away."""
        delay = 0.2
        while True:
            try:
                result = await call()
            except LedgerUnavailableError as exc:
                if self._health.ledger_available:
                    log.error("ledger unavailable, holding intake until it returns: %s", exc)
                self._health.ledger_available = False
                self._health.last_problem = str(exc)
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not self._health.ledger_available:
                log.warning("ledger is back; resuming")
                self._health.ledger_available = True
            return result
