"""What can go wrong on the sandbox platform, switchable at start and while it runs.

One mutable ``Faults`` object is shared by the running server and whoever holds it
(a test, the admin endpoint): changing a field takes effect on the next request.
Every chance decision draws from one seeded ``random.Random``, so a seeded run
makes the same decisions for the same sequence of requests.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal, get_args

__all__ = ["PROFILES", "Faults", "InDoubtMode", "MaintenanceWindow", "QuotaMeter"]

InDoubtMode = Literal["hang", "drop"]
SERVER_ERROR_STATUSES = (500, 502, 504)


@dataclass(frozen=True)
class MaintenanceWindow:
    """A planned outage: every upload is answered 503 from ``start`` until ``end``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("maintenance window times must carry a UTC offset")
        if self.end <= self.start:
            raise ValueError(f"maintenance window ends before it starts: {self.to_text()}")

    @classmethod
    def parse(cls, value: object) -> MaintenanceWindow:
        """From ``"START/END"`` (RFC 3339 each) or ``{"start": ..., "end": ...}``."""
        if isinstance(value, MaintenanceWindow):
            return value
        if isinstance(value, str) and "/" in value:
            start, end = value.split("/", 1)
        elif isinstance(value, Mapping) and {"start", "end"} <= value.keys():
            start, end = value["start"], value["end"]
        else:
            raise ValueError(f"a maintenance window is 'START/END' or {{start, end}}: {value!r}")
        try:
            return cls(datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end)))
        except ValueError as exc:
            raise ValueError(f"bad maintenance window {value!r}: {exc}") from None

    def covers(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def to_text(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def _number(name: str, value: object, *, low: float = 0.0, high: float = math.inf) -> None:
    # bool is an int to Python, but `true` for a latency is a mistake in a PATCH body
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")


@dataclass(eq=False)
class Faults:
    """The sandbox's fault switches; all off by default (a well-behaved platform)."""

    #: fixed delay before every API answer, and a uniform random extra on top
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    #: fraction of new uploads answered 202 with a receipt instead of 201
    accept_async_fraction: float = 0.0
    #: how long such a receipt stays PROCESSING; None keeps it there for ever
    receipt_processing_seconds: float | None = 1.0
    #: fraction of API requests answered 500, 502 or 504 (nothing stored)
    server_error_fraction: float = 0.0
    #: fraction of uploads processed (and stored) whose answer never arrives
    in_doubt_fraction: float = 0.0
    #: "hang": hold the request open ``in_doubt_hang_seconds`` then drop it;
    #: "drop": close the connection at once
    in_doubt_mode: InDoubtMode = "hang"
    in_doubt_hang_seconds: float = 60.0
    #: down for maintenance now (503), with this Retry-After if given
    maintenance: bool = False
    maintenance_retry_after: float | None = None
    #: planned outages; Retry-After is the time left in the window
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    #: API requests each app id may make per second (sliding); None = unlimited
    quota_per_second: int | None = None
    #: seeds ``rng``; None draws a fresh seed
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._check()
        self.rng = random.Random(self.seed)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls) if f.init)

    @classmethod
    def profile(cls, name: str, **overrides: Any) -> Faults:
        """A named set of faults (see ``PROFILES``), with ``overrides`` on top."""
        if name not in PROFILES:
            raise ValueError(f"unknown fault profile {name!r}; known: {', '.join(PROFILES)}")
        faults = cls()
        faults.update(**{**PROFILES[name], **overrides})
        return faults

    def update(self, **changes: Any) -> None:
        """Change some switches at once; on any bad name or value, change none."""
        unknown = sorted(set(changes) - self.names())
        if unknown:
            raise ValueError(
                f"unknown fault setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.names()))}"
            )
        if "maintenance_windows" in changes:
            windows = changes["maintenance_windows"]
            if not isinstance(windows, list | tuple):
                raise TypeError("maintenance_windows must be a list")
            changes["maintenance_windows"] = tuple(MaintenanceWindow.parse(w) for w in windows)
        candidate = replace(self, **changes)  # runs the checks of __post_init__
        for name in changes:
            setattr(self, name, getattr(candidate, name))
        if "seed" in changes:
            self.rng = candidate.rng

    def _check(self) -> None:
        for name in ("latency_ms", "latency_jitter_ms", "in_doubt_hang_seconds"):
            _number(name, getattr(self, name))
        for name in ("accept_async_fraction", "server_error_fraction", "in_doubt_fraction"):
            _number(name, getattr(self, name), high=1.0)
        for name in ("receipt_processing_seconds", "maintenance_retry_after"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name))
        if self.quota_per_second is not None and (
            isinstance(self.quota_per_second, bool)
            or not isinstance(self.quota_per_second, int)
            or self.quota_per_second < 1
        ):
            raise ValueError(
                f"quota_per_second must be a whole number >= 1 or null, "
                f"got {self.quota_per_second!r}"
            )
        if self.in_doubt_mode not in get_args(InDoubtMode):
            raise ValueError(f"in_doubt_mode must be one of {get_args(InDoubtMode)}")
        if not isinstance(self.maintenance, bool):
            raise TypeError(f"maintenance must be true or false, got {self.maintenance!r}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"seed must be a whole number or null, got {self.seed!r}")
        if not all(isinstance(w, MaintenanceWindow) for w in self.maintenance_windows):
            raise TypeError("maintenance_windows must hold MaintenanceWindow values")

    # --- decisions, one per request ----------------------------------------------------

    def latency_seconds(self) -> float:
        jitter = self.rng.uniform(0, self.latency_jitter_ms) if self.latency_jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000

    def _chance(self, fraction: float) -> bool:
        # No draw for a switched-off fault, so turning one on leaves the others' sequence
        # as it was in a seeded run without it.
        return fraction > 0 and self.rng.random() < fraction

    def server_error(self) -> int | None:
        if self._chance(self.server_error_fraction):
            return self.rng.choice(SERVER_ERROR_STATUSES)
        return None

    def answer_async(self) -> bool:
        return self._chance(self.accept_async_fraction)

    def in_doubt(self) -> bool:
        return self._chance(self.in_doubt_fraction)

    def down_for_maintenance(self, now: datetime) -> tuple[bool, float | None]:
        """Whether uploads are refused at ``now``, and the Retry-After to send if known."""
        if self.maintenance:
            return True, self.maintenance_retry_after
        ends = [w.end for w in self.maintenance_windows if w.covers(now)]
        if ends:
            return True, (max(ends) - now).total_seconds()
        return False, None

    def to_json(self) -> dict[str, Any]:
        view: dict[str, Any] = {name: getattr(self, name) for name in sorted(self.names())}
        view["maintenance_windows"] = [
            {"start": w.start.isoformat(), "end": w.end.isoformat()}
            for w in self.maintenance_windows
        ]
        return view


#: "demo": what a busy real platform does to a feed: a few percent of transient faults
#: and some slow 202s, all of which the pipeline must absorb without losing an invoice.
PROFILES: Mapping[str, Mapping[str, Any]] = {
    "none": {},
    "demo": {
        "latency_ms": 5.0,
        "latency_jitter_ms": 25.0,
        "accept_async_fraction": 0.08,
        "receipt_processing_seconds": 1.5,
        "server_error_fraction": 0.03,
        "in_doubt_fraction": 0.01,
        "in_doubt_mode": "drop",
    },
}


class QuotaMeter:
    """Requests per app id over the last second, to answer 429 past the quota."""

    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = {}

    def admit(self, app_id: str, now: float, per_second: int | None) -> float | None:
        """None when admitted (and counted), else the seconds until a slot frees up."""
        if per_second is None:
            return None
        recent = self._recent.setdefault(app_id, deque())
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) < per_second:
            recent.append(now)
            return None
        return recent[0] + 1.0 - now

    def reset(self) -> None:
        self._recent.clear()
