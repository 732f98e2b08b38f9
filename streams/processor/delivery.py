"""One invoice to the platform: POST, retry what is retryable, classify the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from streams.errors import (
    PlatformAuthError,
    PlatformError,
    PlatformInDoubtError,
    PlatformRateLimitedError,
    PlatformRejectedError,
    PlatformUnavailableError,
)
from streams.platform.results import Accepted, Processing
from streams.processor.health import Health
from streams.processor.ports import PlatformPort
from streams.processor.records import IssuedEvent
from streams.retry.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivered:
    result: Accepted | Processing
    posts: int


@dataclass(frozen=True, slots=True)
class Undeliverable:
    code: str
    message: str
    field: str | None
    retryable: bool
    posts: int
    exception_class: str
    first_failure_at: datetime


class Deliverer:
    """Retries transient failures with backoff; a 401 halts instead of failing.

    A 401 is a configuration error, not the invoice's fault: every invoice would
    fail the same way, so we hold the invoice (and thereby the partition) and say so
    loudly until the credentials work again, rather than dead-letter everything.
    """

    def __init__(
        self,
        platform: PlatformPort,
        backoff: Backoff,
        health: Health,
        *,
        concurrency: int,
        auth_retry_seconds: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._platform = platform
        self._backoff = backoff
        self._health = health
        self._limit = asyncio.Semaphore(concurrency)
        self._auth_retry_seconds = auth_retry_seconds
        self._sleep = sleep

    async def deliver(self, event: IssuedEvent, posts: int = 0) -> Delivered | Undeliverable:
        failures = 0
        first_failure: datetime | None = None
        while True:
            posts += 1
            try:
                async with self._limit:
                    result = await self._platform.submit(event.invoice, event.body)
            except PlatformRejectedError as exc:
                return Undeliverable(
                    exc.code, exc.message, exc.field, False, posts, type(exc).__name__,
                    first_failure or datetime.now(UTC),
                )  # fmt: skip
            except PlatformAuthError as exc:
                posts -= 1  # refused at the door: nothing reached the platform
                self._health.platform_credentials_ok = False
                self._health.last_problem = f"platform rejected our credentials: {exc.message}"
                log.critical(
                    "platform answered 401 for %s: submission stopped until the credentials "
                    "(INVOICE_SYNC_PLATFORM_APP_ID / _APP_SECRET) work; retrying in %.0fs",
                    event.key, self._auth_retry_seconds,
                )  # fmt: skip
                await self._sleep(self._auth_retry_seconds)
                continue
            except PlatformUnavailableError as exc:
                now = datetime.now(UTC)
                first_failure = first_failure or now
                if not isinstance(exc, PlatformRateLimitedError):
                    # A 429 is pacing, not failure: it must not use up the retry budget.
                    failures += 1
                if self._backoff.exhausted(failures):
                    return Undeliverable(
                        "RETRIES_EXHAUSTED",
                        f"gave up after {posts} POSTs; last: {exc.message}",
                        None, True, posts, type(exc).__name__, first_failure,
                    )  # fmt: skip
                delay = self._backoff.delay(failures or 1, exc.retry_after)
                level = logging.INFO if isinstance(exc, PlatformInDoubtError) else logging.DEBUG
                log.log(level, "%s: %s; retry %d in %.2fs", event.key, exc.message, posts, delay)
                await self._sleep(delay)
                continue
            except PlatformError as exc:
                return Undeliverable(
                    exc.reason_code, exc.message, None, False, posts, type(exc).__name__,
                    first_failure or datetime.now(UTC),
                )  # fmt: skip
            self._health.platform_credentials_ok = True
            return Delivered(result, posts)
