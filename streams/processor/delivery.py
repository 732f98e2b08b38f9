"""One invoice to the platform: POST, retry what is retryable, classify the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from streams.errors import (
    PlatformAuthError,
    PlatformError,
    PlatformInDoubtError,
    PlatformMaintenanceError,
    PlatformRateLimitedError,
    PlatformRejectedError,
    PlatformUnavailableError,
)
from streams.observability.metrics import Metrics
from streams.platform.results import Accepted, Processing, StoredInvoice, key_figures
from streams.processor.crashpoints import NO_CRASH, CrashPoints
from streams.processor.health import Health
from streams.processor.ports import PlatformPort
from streams.processor.records import IssuedEvent
from streams.retry.backoff import Backoff
from streams.retry.circuit import CircuitBreaker
from streams.retry.gate import Gate
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

    Only failures of the invoice's own use its retry budget: not 429s (pacing), not
    503s (maintenance opens the circuit) and not failures while the circuit is open.
    Before giving up, the platform is asked whether it holds the invoice after all
    (an in-doubt POST may have been stored); if it cannot say, the invoice is parked,
    never failed.
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
        self._gate = Gate(breaker, bucket)
        self._crash = crash
        self._auth_retry_seconds = auth_retry_seconds
        self._park_after = park_after
        self._metrics = metrics or Metrics()
        self._inflight = 0
        self._metrics.track_inflight(lambda: self._inflight)
        self._slots_held = 0
        self._metrics.track_platform_slots(lambda: self._slots_held, concurrency)
        # What the credentials gauge last said, so a success sets it only after a 401.
        self._credentials_shown_ok = True
        self._sleep = sleep

    async def _attempt(self, event: IssuedEvent) -> Accepted | Processing | PlatformError:
        """One POST, through the breaker and the rate limit; errors come back as values."""
        # acquire/release rather than `async with`, and the POST handed to the gate as
        # its coroutine: each coroutine frame between the task and the HTTP call is
        # passed through twice per invoice, and this path runs thousands of times a second.
        await self._limit.acquire()
        self._slots_held += 1
        try:
            result = await self._gate.call(partial(self._post, event))
            self._crash.reached("after_post")
            return result
        finally:
            self._slots_held -= 1
            self._limit.release()

    def _post(self, event: IssuedEvent) -> Awaitable[Accepted | Processing]:
        self._crash.reached("before_post")
        return self._platform.submit(
            event.summary, event.body, body_sha256=event.content_hash, on_sent=self._on_wire
        )

    def _on_wire(self) -> None:
        self._crash.reached("during_post")

    async def _lookup(self, event: IssuedEvent) -> StoredInvoice | PlatformError | None:
        async with self._limit:
            self._slots_held += 1
            try:
                key = event.key
                return await self._gate.call(
                    lambda: self._platform.get_invoice(key.seller_tax_id, key.invoice_number)
                )
            finally:
                self._slots_held -= 1

    async def deliver(
        self, event: IssuedEvent, posts: int = 0, failures: int = 0
    ) -> Delivered | Undeliverable | Deferred:
        """``posts`` and ``failures`` carry over from earlier attempts (after a park)."""
        first_failure: datetime | None = None
        waited = 0.0
        in_doubt = False
        self._inflight += 1
        try:
            while True:
                result = await self._attempt(event)
                if isinstance(result, PlatformAuthError):
                    # Refused at the door: nothing reached the platform, no POST counted.
                    self._health.platform_credentials_ok = False
                    self._metrics.credentials_ok(False)
                    self._credentials_shown_ok = False
                    self._health.last_problem = (
                        f"platform rejected our credentials: {result.message}"
                    )
                    log.critical(
                        "platform answered 401 for %s: submission stopped until the credentials "
                        "(INVOICE_SYNC_PLATFORM_APP_ID / _APP_SECRET) work; retrying in %.0fs",
                        event.key, self._auth_retry_seconds,
                    )  # fmt: skip
                    await self._sleep(self._auth_retry_seconds)
                    continue
                posts += 1
                if in_doubt and not isinstance(result, PlatformUnavailableError):
                    log.info("%s: the POST in doubt is settled: %s", event.key,
                             type(result).__name__,
                             extra=_fields(event, PlatformInDoubtError.reason_code))  # fmt: skip
                if isinstance(result, Accepted | Processing):
                    self._health.platform_credentials_ok = True
                    if not self._credentials_shown_ok:
                        self._metrics.credentials_ok(True)
                        self._credentials_shown_ok = True
                    return Delivered(result, posts)
                first_failure = first_failure or datetime.now(UTC)
                if isinstance(result, PlatformRejectedError):
                    return Undeliverable(result.code, result.message, result.field, False, posts,
                                         type(result).__name__, first_failure)  # fmt: skip
                if not isinstance(result, PlatformUnavailableError):
                    return Undeliverable(result.reason_code, result.message, None, False, posts,
                                         type(result).__name__, first_failure)  # fmt: skip
                closed = self._gate.closed
                if closed and not isinstance(
                    result, PlatformRateLimitedError | PlatformMaintenanceError
                ):
                    # A 429 is pacing, a 503 is maintenance (it opened the circuit), and
                    # failures while the circuit is open are the platform's: none of them
                    # uses this invoice's budget.
                    failures += 1
                in_doubt = in_doubt or isinstance(result, PlatformInDoubtError)
                delay = self._backoff.delay(failures or 1, result.retry_after)
                if self._backoff.exhausted(failures):
                    return await self._give_up(event, result, posts, failures, first_failure,
                                               in_doubt, delay)  # fmt: skip
                if waited + delay > self._park_after and closed:
                    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                    # The pipeline logs the park at INFO with the invoice's fields
                    # (Messages.parked).
                    log.debug("%s: %s; parked until %s", event.key, result.message, retry_at)
                    return Deferred(posts, failures, retry_at, result.message)
                waited += delay
                self._metrics.retried(type(result).reason_code.lower())
                in_doubt_now = isinstance(result, PlatformInDoubtError)
                level = logging.INFO if in_doubt_now else logging.DEBUG
                log.log(level, "%s: %s; retry %d in %.2fs", event.key, result.message, posts,
                        delay, extra=_fields(event, result.reason_code))  # fmt: skip
                await self._sleep(delay)
        finally:
            self._inflight -= 1

    async def _give_up(
        self, event: IssuedEvent, last: PlatformUnavailableError, posts: int, failures: int,
        first_failure: datetime, in_doubt: bool, delay: float,
    ) -> Delivered | Undeliverable | Deferred:  # fmt: skip
        """Out of retries: fail only what the platform says it does not hold.

        Any failed POST may have been stored (an in-doubt one quite likely, and that
        memory does not survive a park or a crash), so the platform is always asked.
        """
        found = await self._lookup(event)
        if isinstance(found, PlatformError):
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            log.warning(
                "%s: out of retries%s, and the platform cannot say whether it holds it (%s); "
                "parked until %s, not failed", event.key, " after an in-doubt POST" * in_doubt,
                found.message, retry_at,
            )  # fmt: skip
            return Deferred(posts, failures, retry_at, found.message)
        if found is not None:
            mine, theirs = key_figures(event.summary), key_figures(found.invoice)
            differ = [name for name in mine if mine[name] != theirs[name]]
            if differ:
                return Undeliverable(
                    "DUPLICATE_CONFLICT",
                    f"the platform already stores a different invoice under this number "
                    f"({found.platform_ref}): {', '.join(differ)} differ",
                    differ[0], False, posts, "DuplicateConflict", first_failure,
                )  # fmt: skip
            log.info("%s: out of retries, but the platform holds it (%s): confirmed",
                     event.key, found.platform_ref)  # fmt: skip
            return Delivered(Accepted(found.platform_ref, found.accepted_at), posts)
        return Undeliverable(
            "RETRIES_EXHAUSTED", f"gave up after {posts} POSTs; last: {last.message}",
            None, True, posts, type(last).__name__, first_failure,
        )  # fmt: skip


def _fields(event: IssuedEvent, reason_code: str) -> dict[str, str]:
    """The log fields that let one grep follow an invoice (streams.observability.logs)."""
    return {"invoice_key": str(event.key), "event_id": event.event_id, "reason_code": reason_code}
