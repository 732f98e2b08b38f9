"""Exponential backoff with full jitter, honouring a server's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    base: float = 0.2
    ceiling: float = 30.0
    max_attempts: int = 8
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter spreads the retries of many invoices that failed together, so a
        recovering platform is not hit by a synchronized wave; Retry-After is a floor
        because the platform said so.
        """
        exponential = min(self.ceiling, self.base * (2 ** (attempt - 1)))
        jittered = self.rng.uniform(exponential / 2, exponential)
        if retry_after is not None:
            return max(jittered, retry_after)
        return jittered

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
