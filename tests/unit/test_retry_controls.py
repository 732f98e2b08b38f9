"""Backoff, the circuit breaker and the token bucket: the platform-facing brakes."""

from __future__ import annotations

import asyncio
import random

from streams.retry.backoff import Backoff
from streams.retry.circuit import CircuitBreaker, CircuitState
from streams.retry.ratelimit import TokenBucket


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    backoff = Backoff(base=0.2, ceiling=5.0, max_attempts=4, rng=random.Random(1))
    delays = [backoff.delay(n) for n in range(1, 10)]
    assert all(0.1 <= d <= 5.0 for d in delays)
    assert max(delays[5:]) > max(delays[:2])
    assert backoff.delay(1, retry_after=7.0) == 7.0
    assert not backoff.exhausted(3) and backoff.exhausted(4)


async def test_breaker_opens_after_threshold_and_half_opens_on_healthy_probe() -> None:
    healthy = asyncio.Event()

    async def probe() -> bool:
        return healthy.is_set()

    states: list[CircuitState] = []
    breaker = CircuitBreaker(probe, threshold=3, probe_interval=0.01, on_change=states.append)
    try:
        for _ in range(3):
            await breaker.admit()
            breaker.failure()
        assert breaker.state == CircuitState.OPEN
        waiting = asyncio.create_task(breaker.admit())
        await asyncio.sleep(0.05)
        assert not waiting.done(), "an open circuit holds deliveries back"
        healthy.set()
        await asyncio.wait_for(waiting, 1.0)
        assert breaker.state == CircuitState.HALF_OPEN
        second = asyncio.create_task(breaker.admit())
        await asyncio.sleep(0.1)
        assert not second.done(), "half-open lets one trial through at a time"
        breaker.success()
        await asyncio.wait_for(second, 1.0)
        assert breaker.state == CircuitState.CLOSED
        assert states == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]
    finally:
        await breaker.close()


async def test_failed_trial_opens_the_breaker_again() -> None:
    async def probe() -> bool:
        return True

    breaker = CircuitBreaker(probe, threshold=1, probe_interval=0.01)
    try:
        breaker.failure()
        await asyncio.wait_for(breaker.admit(), 1.0)
        breaker.failure()
        assert breaker.state == CircuitState.OPEN
    finally:
        await breaker.close()


async def test_successes_reset_the_failure_count() -> None:
    async def probe() -> bool:
        return False

    breaker = CircuitBreaker(probe, threshold=2, probe_interval=1)
    for _ in range(5):
        breaker.failure()
        breaker.success()
    assert breaker.state == CircuitState.CLOSED
    await breaker.close()


async def test_token_bucket_paces_beyond_the_burst() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        await bucket.acquire()
    assert len(slept) == 3
    assert abs(sum(slept) - 0.3) < 1e-9


async def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(0)
    for _ in range(1000):
        await bucket.acquire()
