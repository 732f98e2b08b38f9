"""A token bucket: keep a worker under the platform's request quota, so a month-end
burst is paced instead of answered 429; and when a 429 comes anyway, every request
of the worker waits out its Retry-After, not only the one that got it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """``rate`` requests per second on average, bursts up to ``burst``; rate 0 = no limit."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rate = rate
        self._capacity = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = clock()
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """The platform said Retry-After: hold every request for ``seconds``, even with
        no rate configured, because the quota is the app id's, shared by all requests."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def open_now(self) -> bool:
        """Whether ``acquire`` would return at once without taking a token: no rate
        configured and no Retry-After pause running."""
        return self._rate <= 0 and self._paused_until <= self._clock()

    async def acquire(self) -> None:
        while (paused := self._paused_until - self._clock()) > 0:
            await self._sleep(paused)
        if self._rate <= 0:
            return
        # One waiter at a time keeps the order fair and the arithmetic simple.
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(
                    self._capacity, self._tokens + (now - self._updated) * self._rate
                )
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self._rate)
