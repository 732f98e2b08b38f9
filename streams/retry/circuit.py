"""A circuit breaker for the platform: stop hammering it while it is down.

Closed: requests flow. After ``threshold`` consecutive transient failures
(5xx, timeouts) it opens, and a 503 maintenance answer opens it at once (the
contract's 503 row): every delivery waits instead of failing, so an outage
dead-letters nothing and the backlog stays in Kafka. While open, a probe of the
unauthenticated health endpoint runs every ``probe_interval``; when it answers ok
the breaker half-opens and lets one request through. Any answer from the platform
to that trial (a 429 included: the platform is up, only busy) closes it; a
failure opens it again. Every admitted request must end in ``success``,
``failure``, ``trip`` or ``release``, or a half-open breaker admits nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        probe: Callable[[], Awaitable[bool]],
        *,
        threshold: int,
        probe_interval: float,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self._probe = probe
        self._threshold = threshold
        self._probe_interval = probe_interval
        self._on_change = on_change
        self._failures = 0
        self.state = CircuitState.CLOSED
        # Set while requests may pass (closed, or half-open for one trial).
        self._passable = asyncio.Event()
        self._passable.set()
        self._trial_in_flight = False
        self._prober: asyncio.Task[None] | None = None

    async def admit(self) -> None:
        """Wait until a request may go. While half-open, only one trial goes at a time."""
        while True:
            await self._passable.wait()
            if self.state == CircuitState.CLOSED:
                return
            if not self._trial_in_flight:
                self._trial_in_flight = True  # success() or failure() ends the trial
                return
            await asyncio.sleep(0.05)

    def success(self) -> None:
        self._failures = 0
        if self.state != CircuitState.CLOSED:
            log.warning("platform answers again: circuit closed, intake resumes")
            self._set(CircuitState.CLOSED)
            # Also when the answer came from a request sent before the circuit opened,
            # not from the half-open trial: waiting deliveries must go again.
            self._passable.set()
        self._trial_in_flight = False

    def failure(self) -> None:
        """A transient failure (5xx, timeout). Rate limiting (429) is not one."""
        self._failures += 1
        if self.state == CircuitState.HALF_OPEN or (
            self.state == CircuitState.CLOSED and self._failures >= self._threshold
        ):
            self._open(f"platform failing ({self._failures} in a row)")
        self._trial_in_flight = False

    def trip(self) -> None:
        """The platform said it is down (503 maintenance): open now, not after a run."""
        self._failures += 1
        if self.state != CircuitState.OPEN:
            self._open("platform in maintenance (503)")
        self._trial_in_flight = False

    def release(self) -> None:
        """An admitted request ended without any answer (cancelled): free the trial."""
        self._trial_in_flight = False

    def _open(self, why: str) -> None:
        log.error("%s: circuit open, deliveries wait; probing /api/v1/health every %.1fs",
                  why, self._probe_interval)  # fmt: skip
        self._set(CircuitState.OPEN)
        self._passable.clear()
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_healthy())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)

    async def _probe_until_healthy(self) -> None:
        while self.state == CircuitState.OPEN:
            await asyncio.sleep(self._probe_interval)
            if await self._probe():
                log.warning("platform health answers ok: circuit half-open, trying one request")
                self._set(CircuitState.HALF_OPEN)
                self._passable.set()

    def _set(self, state: CircuitState) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(state)
