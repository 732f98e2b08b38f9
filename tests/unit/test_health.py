"""``/readyz``: ready only with a ledger that answers, a broker connection, a place in the
consumer group and credentials the platform accepts; each check can also come back."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp.test_utils import TestClient, TestServer

from streams.api.server import build_api
from streams.errors import (
    LedgerUnavailableError,
    PlatformAuthError,
    PlatformUnavailableError,
)
from streams.ledger.store import Ledger
from streams.processor import health as health_module
from streams.processor.health import (
    PROBE_INVOICE_NUMBER,
    PROBE_SELLER_TAX_ID,
    Health,
    probe_credentials,
)
from streams.settings import Settings


class Switch:
    """A ledger ping and a broker check that pass or fail as the test says."""

    def __init__(self) -> None:
        self.ledger_up = True
        self.broker_up = True
        self.hang = False

    async def ping(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if not self.ledger_up:
            raise LedgerUnavailableError("ledger database unavailable: connection refused")

    async def broker(self) -> bool:
        if self.hang:
            await asyncio.Event().wait()
        return self.broker_up


class Platform:
    def __init__(self, answer: Exception | None) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    async def get_invoice(self, seller_tax_id: str, invoice_number: str) -> Any:
        self.asked.append((seller_tax_id, invoice_number))
        if self.answer is not None:
            raise self.answer
        return None


def joined() -> Health:
    return Health(assigned_partitions=2)


async def test_ready_when_every_check_passes() -> None:
    health, switch = joined(), Switch()
    await health.refresh(switch.ping, switch.broker)
    assert health.ready
    assert health.as_dict()["problems"] == []


async def test_a_ledger_blip_passes_and_the_worker_is_ready_again() -> None:
    health, switch = joined(), Switch()
    switch.ledger_up = False
    await health.refresh(switch.ping, switch.broker)
    assert not health.ready
    assert health.problems == ["the ledger database does not answer"]
    assert "connection refused" in str(health.last_problem)
    switch.ledger_up = True
    await health.refresh(switch.ping, switch.broker)
    assert health.ready


async def test_no_broker_connection_is_unready_until_it_returns() -> None:
    health, switch = joined(), Switch()
    switch.broker_up = False
    await health.refresh(switch.ping, switch.broker)
    assert health.problems == ["the Kafka producer has no broker connection"]
    switch.broker_up = True
    await health.refresh(switch.ping, switch.broker)
    assert health.ready


async def test_checks_that_hang_count_as_failed(monkeypatch: Any) -> None:
    monkeypatch.setattr(health_module, "CHECK_TIMEOUT", 0.01)
    health, switch = joined(), Switch()
    switch.hang = True
    await health.refresh(switch.ping, switch.broker)
    assert not health.ledger_available and health.broker_connected is False
    assert len(health.problems) == 2


async def test_not_in_the_consumer_group_yet_is_unready() -> None:
    health, switch = Health(), Switch()
    await health.refresh(switch.ping, switch.broker)
    assert health.problems == ["not in the consumer group yet (no partitions assigned)"]
    health.assigned_partitions = 0  # in the group, but more members than partitions
    assert health.ready


async def test_an_open_circuit_is_shown_but_not_unready() -> None:
    health, switch = joined(), Switch()
    health.circuit = "open"
    await health.refresh(switch.ping, switch.broker)
    assert health.ready and health.as_dict()["circuit"] == "open"


async def test_the_probe_learns_refused_credentials_without_any_submission() -> None:
    health, switch = joined(), Switch()
    await health.refresh(switch.ping, switch.broker)
    platform = Platform(PlatformAuthError("GET ...: HTTP 401 bad signature", status=401))
    assert await probe_credentials(platform, health) is False
    # A signed GET of an invoice no one issues: nothing is ever posted.
    assert platform.asked == [(PROBE_SELLER_TAX_ID, PROBE_INVOICE_NUMBER)]
    assert not health.ready
    assert health.problems == ["the tax platform refuses our credentials (HTTP 401)"]
    assert health.as_dict()["platform_credentials_ok"] is False

    platform.answer = None  # the secret was fixed: the 404 of the probe proves it
    assert await probe_credentials(platform, health) is True
    assert health.ready and health.credentials_checked_at is not None


async def test_a_probe_without_verdict_changes_nothing() -> None:
    health = joined()
    health.credentials_refused("HTTP 401")
    away = Platform(PlatformUnavailableError("HTTP 503 maintenance", status=503))
    assert await probe_credentials(away, health) is None
    assert health.platform_credentials_ok is False
    health.credentials_accepted()
    assert await probe_credentials(away, health) is None
    assert health.platform_credentials_ok is True


async def test_readyz_answers_503_with_the_reasons_then_200() -> None:
    switch = Switch()
    switch.ledger_up = False
    health = joined()
    ledger = cast(Ledger, switch)  # the endpoint only pings it
    app = build_api(ledger, health, settings=Settings(), broker_check=switch.broker)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503
        assert body["ready"] is False
        assert body["problems"] == ["the ledger database does not answer"]
        assert body["broker_connected"] is True and body["assigned_partitions"] == 2
        switch.ledger_up = True
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 200
        assert body["ready"] is True and body["ledger_available"] is True
