"""What the worker knows about its own health, for logs and ``/readyz``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Health:
    ledger_available: bool = True
    platform_credentials_ok: bool = True
    last_problem: str | None = None
    #: partitions of the issued topic this worker consumes (None: not joined yet)
    assigned_partitions: int | None = None
    #: the platform circuit breaker: closed, open or half_open
    circuit: str = "closed"

    @property
    def ready(self) -> bool:
        return self.ledger_available and self.platform_credentials_ok

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "ledger_available": self.ledger_available,
            "platform_credentials_ok": self.platform_credentials_ok,
            "last_problem": self.last_problem,
            "assigned_partitions": self.assigned_partitions,
            "circuit": self.circuit,
        }
