"""One invoice to the platform: POST, retry what is retryable, classify the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streams.errors import (
    PlatformAuthError,
    PlatformError,
    PlatformInDoubtError,
    PlatformRateLimitedError,
    PlatformRejectedError,
    PlatformUnavailableError,
)
from streams.observability.metrics import Metrics
from streams.platform.results import Accepted, Processing
from streams.processor.crashpoints import NO_CRASH, CrashPoints
from streams.processor.health import Health
from streams.processor.ports import PlatformPort
from streams.processor.records import IssuedEvent
from streams.retry.backoff import Backoff
from streams.retry.circuit import CircuitBreaker, CircuitState
from streams.retry.ratelimit import TokenBucket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivered:
    result: Accepted | Processing
    posts: int


@dataclass(frozen=True, slots=True)
class Deferred:
    """Still failing transiently after the time a batch may spend on it: park it in the
    ledger until ``retry_at`` so the rest of its partition keeps moving."""

    posts: int
    failures: int
    retry_at: datetime
    last_error: str


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
        breaker: CircuitBreaker | None = None,
        bucket: TokenBucket | None = None,
        crash: CrashPoints = NO_CRASH,
        auth_retry_seconds: float = 30.0,
        park_after: float = float("inf"),
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._platform = platform
        self._backoff = backoff
        self._health = health
        self._limit = asyncio.Semaphore(concurrency)
        self._breaker = breaker
        self._bucket = bucket or TokenBucket(0)
        self._crash = crash
        self._auth_retry_seconds = auth_retry_seconds
        self._park_after = park_after
        self._metrics = metrics or Metrics()
        self._inflight = 0
        self._sleep = sleep

    async def _attempt(self, event: IssuedEvent) -> Accepted | Processing | PlatformError:
        """One POST, through the breaker and the rate limit; errors come back as values."""
        async with self._limit:
            if self._breaker is not None:
                await self._breaker.admit()
            await self._bucket.acquire()
            self._crash.reached("before_post")
            try:
                result: Accepted | Processing | PlatformError = await self._platform.submit(
                    event.invoice, event.body
                )
            except PlatformError as exc:
                result = exc
            if self._breaker is not None:
                if not isinstance(result, PlatformUnavailableError):
                    self._breaker.success()  # any real answer means the platform is up
                elif not isinstance(result, PlatformRateLimitedError):
                    self._breaker.failure()
            self._crash.reached("after_post")
            return result

    async def deliver(
        self, event: IssuedEvent, posts: int = 0, failures: int = 0
    ) -> Delivered | Undeliverable | Deferred:
        """``posts`` and ``failures`` carry over from earlier attempts (after a park)."""
        self._inflight += 1
        self._metrics.inflight(self._inflight)
        try:
            return await self._deliver(event, posts, failures)
        finally:
            self._inflight -= 1
            self._metrics.inflight(self._inflight)

    async def _deliver(
        self, event: IssuedEvent, posts: int, failures: int
    ) -> Delivered | Undeliverable | Deferred:
        first_failure: datetime | None = None
        waited = 0.0
        while True:
            result = await self._attempt(event)
            if isinstance(result, PlatformAuthError):
                # Refused at the door: nothing reached the platform, no POST counted.
                self._health.platform_credentials_ok = False
                self._metrics.credentials_ok(False)
                self._health.last_problem = f"platform rejected our credentials: {result.message}"
                log.critical(
                    "platform answered 401 for %s: submission stopped until the credentials "
                    "(INVOICE_SYNC_PLATFORM_APP_ID / _APP_SECRET) work; retrying in %.0fs",
                    event.key, self._auth_retry_seconds,
                )  # fmt: skip
                await self._sleep(self._auth_retry_seconds)
                continue
            posts += 1
            if isinstance(result, Accepted | Processing):
                self._health.platform_credentials_ok = True
                self._metrics.credentials_ok(True)
                return Delivered(result, posts)
            first_failure = first_failure or datetime.now(UTC)
            if isinstance(result, PlatformRejectedError):
                return Undeliverable(result.code, result.message, result.field, False, posts,
                                     type(result).__name__, first_failure)  # fmt: skip
            if not isinstance(result, PlatformUnavailableError):
                return Undeliverable(result.reason_code, result.message, None, False, posts,
                                     type(result).__name__, first_failure)  # fmt: skip
            closed = self._breaker is None or self._breaker.state == CircuitState.CLOSED
            if not isinstance(result, PlatformRateLimitedError) and closed:
                # A 429 is pacing, not failure; and failures of an outage (the breaker
                # opened) are the platform's, not this invoice's: neither uses the budget.
                failures += 1
            if self._backoff.exhausted(failures):
                return Undeliverable(
                    "RETRIES_EXHAUSTED", f"gave up after {posts} POSTs; last: {result.message}",
                    None, True, posts, type(result).__name__, first_failure,
                )  # fmt: skip
            delay = self._backoff.delay(failures or 1, result.retry_after)
            if waited + delay > self._park_after and closed:
                retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                log.info("%s: %s; parked until %s", event.key, result.message, retry_at)
                return Deferred(posts, failures, retry_at, result.message)
            waited += delay
            self._metrics.retried(type(result).reason_code.lower())
            level = logging.INFO if isinstance(result, PlatformInDoubtError) else logging.DEBUG
            log.log(level, "%s: %s; retry %d in %.2fs", event.key, result.message, posts, delay)
            await self._sleep(delay)
