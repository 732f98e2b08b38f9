"""The brakes every platform request of a worker goes through: the circuit breaker
and the shared token bucket, and what each kind of answer tells them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.errors import (
    PlatformError,
    PlatformMaintenanceError,
    PlatformRateLimitedError,
    PlatformUnavailableError,
)
from streams.retry.circuit import CircuitBreaker, CircuitState
from streams.retry.ratelimit import TokenBucket

T = TypeVar("T")


class Gate:
    def __init__(self, breaker: CircuitBreaker | None, bucket: TokenBucket | None) -> None:
        self.breaker = breaker
        self.bucket = bucket or TokenBucket(0)

    @property
    def closed(self) -> bool:
        """Whether failures now are the invoice's own, not those of an outage."""
        return self.breaker is None or self.breaker.state == CircuitState.CLOSED

    async def call(self, request: Callable[[], Awaitable[T]]) -> T | PlatformError:
        """Wait for the breaker and the bucket, send ``request``; errors come back as
        values, and every outcome is reported to the breaker so a trial never hangs."""
        # Closed and unpaced, neither would wait: not awaiting them then spares two
        # coroutines per request.
        if self.breaker is not None and self.breaker.state != CircuitState.CLOSED:
            await self.breaker.admit()
        answered = False
        try:
            if not self.bucket.open_now():
                await self.bucket.acquire()
            try:
                result: T | PlatformError = await request()
            except PlatformError as exc:
                result = exc
            answered = True
            self._observe(result)
            return result
        finally:
            if not answered and self.breaker is not None:
                self.breaker.release()

    def _observe(self, result: object) -> None:
        if isinstance(result, PlatformRateLimitedError) and result.retry_after:
            self.bucket.pause(result.retry_after)
        if self.breaker is None:
            return
        if isinstance(result, PlatformMaintenanceError):
            self.breaker.trip()  # the contract's 503 row: open the circuit
        elif isinstance(result, PlatformUnavailableError) and not isinstance(
            result, PlatformRateLimitedError
        ):
            self.breaker.failure()
        else:
            # Any real answer, a 429 included, means the platform is up; it also ends
            # a half-open trial, which would otherwise hold the breaker shut for ever.
            self.breaker.success()
