"""Explicit crash points for fault-injection tests: a worker armed with
``INVOICE_SYNC_FAULT_CRASH_AT=<point>`` kills itself with SIGKILL the
``INVOICE_SYNC_FAULT_CRASH_AFTER``-th time it reaches that point, so a test can
crash it exactly between two steps instead of hoping a timer lands there."""

from __future__ import annotations

import logging
import os
import signal
from typing import Literal

log = logging.getLogger(__name__)

#: ``during_post`` fires inside the POST: the platform has answered, the worker has
#: not yet taken the answer, so the platform stores an invoice the worker never hears of.
CrashPoint = Literal["before_post", "during_post", "after_post", "after_ledger", "before_commit"]
CRASH_POINTS: tuple[CrashPoint, ...] = (
    "before_post",
    "during_post",
    "after_post",
    "after_ledger",
    "before_commit",
)


class CrashPoints:
    def __init__(self, armed: CrashPoint | None = None, after: int = 1) -> None:
        self._armed = armed
        self._after = after
        self._count = 0

    def reached(self, point: CrashPoint) -> None:
        if point != self._armed:
            return
        self._count += 1
        if self._count >= self._after:
            log.critical("fault injection: SIGKILL at %s (hit %d)", point, self._count)
            os.kill(os.getpid(), signal.SIGKILL)


#: the unarmed default: every ``reached`` is a no-op
NO_CRASH = CrashPoints()
