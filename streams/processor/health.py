"""What the worker knows about its own health, for logs and ``/readyz``.

Ready means: the ledger answers a ping, the worker is in its consumer group (its
partitions are known) and its producer has a live broker connection, and the platform
has not refused our credentials. The circuit state is shown but does not make a worker
unready: an open circuit is the platform's outage, which no other worker would fix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from streams.errors import InvoiceSyncError, PlatformAuthError, PlatformError

log = logging.getLogger(__name__)

#: an invoice no one issues: a signed GET of it answers 404 and touches nothing
PROBE_SELLER_TAX_ID = "000000000000000000"
PROBE_INVOICE_NUMBER = "invoice-sync-credentials-probe"
#: how long /readyz waits on the database or the broker before calling it away
CHECK_TIMEOUT = 2.0


class InvoiceLookup(Protocol):
    async def get_invoice(self, seller_tax_id: str, invoice_number: str) -> object: ...


@dataclass
class Health:
    ledger_available: bool = True
    platform_credentials_ok: bool = True
    #: when the platform last accepted a signed request of ours (None: not yet)
    credentials_checked_at: datetime | None = None
    #: whether the producer holds a live connection to a broker (None: not checked yet)
    broker_connected: bool | None = None
    last_problem: str | None = None
    #: partitions of the issued topic this worker consumes (None: not joined yet)
    assigned_partitions: int | None = None
    #: the platform circuit breaker: closed, open or half_open
    circuit: str = "closed"

    @property
    def problems(self) -> list[str]:
        """Why the worker is not ready, in words; empty when it is."""
        found = []
        if not self.ledger_available:
            found.append("the ledger database does not answer")
        if not self.platform_credentials_ok:
            found.append("the tax platform refuses our credentials (HTTP 401)")
        if self.broker_connected is not True:
            found.append("the Kafka producer has no broker connection")
        if self.assigned_partitions is None:
            found.append("not in the consumer group yet (no partitions assigned)")
        return found

    @property
    def ready(self) -> bool:
        return not self.problems

    def credentials_accepted(self) -> None:
        self.platform_credentials_ok = True
        self.credentials_checked_at = datetime.now(UTC)

    def credentials_refused(self, message: str) -> None:
        self.platform_credentials_ok = False
        self.last_problem = f"platform rejected our credentials: {message}"

    async def refresh(
        self, ledger_ping: Callable[[], Awaitable[None]],
        broker_connected: Callable[[], Awaitable[bool]] | None,
    ) -> None:  # fmt: skip
        """Check the ledger and the broker now, both ways: a check that passes again
        makes the worker ready again. Without ``broker_connected`` the flag stays as set."""
        try:
            await asyncio.wait_for(ledger_ping(), CHECK_TIMEOUT)
        except (InvoiceSyncError, OSError, TimeoutError) as exc:
            self.ledger_available = False
            self.last_problem = f"ledger: {exc}" if str(exc) else "ledger: no answer in time"
        else:
            self.ledger_available = True
        if broker_connected is None:
            return
        try:
            self.broker_connected = await asyncio.wait_for(broker_connected(), CHECK_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.debug("broker connection check failed: %r", exc)
            self.broker_connected = False
        if not self.broker_connected:
            self.last_problem = "the Kafka producer has no broker connection"

    def as_dict(self) -> dict[str, object]:
        checked = self.credentials_checked_at
        return {
            "ready": self.ready,
            "problems": self.problems,
            "ledger_available": self.ledger_available,
            "platform_credentials_ok": self.platform_credentials_ok,
            "credentials_checked_at": None if checked is None else checked.isoformat(),
            "broker_connected": self.broker_connected is True,
            "last_problem": self.last_problem,
            "assigned_partitions": self.assigned_partitions,
            "circuit": self.circuit,
        }


async def probe_credentials(platform: InvoiceLookup, health: Health) -> bool | None:
    """One signed, side-effect-free request (GET of an invoice no one issued): a 401
    proves the credentials wrong, any contract answer (404, 200) proves them right.
    Returns what it learned; None when the platform could not say (away, 429, garbled)."""
    try:
        await platform.get_invoice(PROBE_SELLER_TAX_ID, PROBE_INVOICE_NUMBER)
    except PlatformAuthError as exc:
        if health.platform_credentials_ok:
            log.critical("platform refuses our credentials (INVOICE_SYNC_PLATFORM_APP_ID / "
                         "_APP_SECRET): %s", exc.message)  # fmt: skip
        health.credentials_refused(exc.message)
        return False
    except PlatformError as exc:
        log.info("credentials probe got no verdict: %s", exc.message)
        return None
    if not health.platform_credentials_ok:
        log.warning("platform accepts our credentials again")
    health.credentials_accepted()
    return True
