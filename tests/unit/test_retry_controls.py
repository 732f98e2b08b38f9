"""Backoff, the circuit breaker and the token bucket: the platform-facing brakes."""

from __future__ import annotations

import asyncio
import random

import pytest
from pydantic import ValidationError

from streams.errors import PlatformMaintenanceError, PlatformRateLimitedError
from streams.retry.backoff import Backoff
from streams.retry.circuit import CircuitBreaker, CircuitState
from streams.retry.gate import Gate
from streams.retry.ratelimit import TokenBucket
from streams.settings import Settings


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


async def test_an_answer_to_a_request_sent_before_the_circuit_opened_lets_deliveries_go() -> None:
    async def probe() -> bool:
        return False  # only the late answer can close it

    breaker = CircuitBreaker(probe, threshold=2, probe_interval=1)
    try:
        breaker.failure()
        breaker.failure()
        assert breaker.state == CircuitState.OPEN
        breaker.success()  # a request admitted while closed answers after the opening
        assert breaker.state == CircuitState.CLOSED
        await asyncio.wait_for(breaker.admit(), 1.0)
    finally:
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


async def test_a_429_to_the_half_open_trial_closes_the_breaker_instead_of_locking_it() -> None:
    async def probe() -> bool:
        return True

    breaker = CircuitBreaker(probe, threshold=5, probe_interval=0.01)
    gate = Gate(breaker, TokenBucket(0))
    try:
        breaker.trip()

        async def busy() -> None:
            raise PlatformRateLimitedError("429", status=429)

        answer = await asyncio.wait_for(gate.call(busy), 1.0)
        assert isinstance(answer, PlatformRateLimitedError)
        assert breaker.state == CircuitState.CLOSED, "the platform answered: it is up"
        await asyncio.wait_for(breaker.admit(), 1.0)
    finally:
        await breaker.close()


async def test_a_cancelled_trial_frees_the_half_open_breaker() -> None:
    async def probe() -> bool:
        return True

    breaker = CircuitBreaker(probe, threshold=5, probe_interval=0.01)
    gate = Gate(breaker, TokenBucket(0))
    started, hang = asyncio.Event(), asyncio.Event()
    try:
        breaker.trip()

        async def never() -> None:
            started.set()
            await hang.wait()

        trial = asyncio.create_task(gate.call(never))
        await asyncio.wait_for(started.wait(), 1.0)  # admitted as the half-open trial
        trial.cancel()
        await asyncio.gather(trial, return_exceptions=True)
        await asyncio.wait_for(breaker.admit(), 1.0)
    finally:
        await breaker.close()


async def test_maintenance_opens_the_breaker_at_once() -> None:
    async def probe() -> bool:
        return False

    breaker = CircuitBreaker(probe, threshold=5, probe_interval=1)
    gate = Gate(breaker, None)
    try:

        async def maintenance() -> None:
            raise PlatformMaintenanceError("503", status=503)

        await gate.call(maintenance)
        assert breaker.state == CircuitState.OPEN
        assert not gate.closed
    finally:
        await breaker.close()


async def test_a_429_pauses_every_request_of_the_worker_for_retry_after() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(0, clock=lambda: now[0], sleep=sleep)
    gate = Gate(None, bucket)

    async def limited() -> None:
        raise PlatformRateLimitedError("429", status=429, retry_after=2.0)

    await gate.call(limited)
    await bucket.acquire()  # any other request, not only the invoice that got the 429
    assert slept == [2.0]
    await bucket.acquire()
    assert slept == [2.0], "the pause ends with Retry-After"


def test_settings_refuse_a_breaker_slower_than_the_retry_budget() -> None:
    with pytest.raises(ValidationError, match="breaker_threshold"):
        Settings(breaker_threshold=9, retry_max_attempts=8)
    assert Settings().breaker_threshold <= Settings().retry_max_attempts
