"""The worker's operator and admin endpoints against the real broker and database: a token
made through POST /tokens replays a dead letter through POST /dlq/replay, each call is
audited as ``token:<name>``, and a viewer token is refused both."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from streams.client import InvoicePublisher
from streams.demo.feed import SELLERS, issued_event, make_invoice
from streams.dlq.reader import dead_letters_of
from streams.ledger.store import Ledger
from streams.security.audit import AuditEntry, AuditLog
from streams.security.tokens import TokenStore
from streams.validation.today import beijing_today

from .conftest import Pipeline

pytestmark = pytest.mark.integration


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def dead_lettered_invoice(pipeline: Pipeline) -> str:
    """The DLQ position of a fresh invoice that failed validation, once it is there."""
    seller = SELLERS[3][0]
    number = f"{beijing_today():%y}{SELLERS[3][2]}2{uuid.uuid4().int % 10**15:015d}"
    invoice: dict[str, Any] = make_invoice(random.Random(number), seller_index=3, number=number,
                                           issue_date=beijing_today())  # fmt: skip
    invoice["total_amount"] = "0.01"  # the totals no longer add up: VALIDATION
    async with InvoicePublisher(pipeline.settings) as publisher:
        await publisher.publish_raw(f"{seller}:{number}".encode(),
                                    orjson.dumps(issued_event(invoice)))  # fmt: skip
    async with asyncio.timeout(90):
        while True:
            found = await dead_letters_of(pipeline.settings, number, seller)
            if found.records:
                return found.records[0].position
            await asyncio.sleep(0.5)


async def audited_as(ledger: Ledger, action: str, actor: str) -> list[AuditEntry]:
    return await AuditLog(ledger).entries(action=action, actor=actor, limit=10)


async def test_tokens_made_and_dead_letters_replayed_over_http_are_audited(
    pipeline: Pipeline, ledger: Ledger
) -> None:
    admin = await TokenStore(ledger).verify(pipeline.token)
    assert admin is not None
    base = f"http://127.0.0.1:{pipeline.worker.http_port}"
    suffix = uuid.uuid4().hex[:8]
    position = await dead_lettered_invoice(pipeline)

    async with aiohttp.ClientSession() as http:
        made: dict[str, str] = {}
        for role in ("operator", "viewer"):
            name = f"{role}-{suffix}"
            async with http.post(f"{base}/tokens", json={"name": name, "role": role},
                                 headers=pipeline.auth) as resp:  # fmt: skip
                assert resp.status == 201
                body = await resp.json()
            assert body["name"] == name and body["role"] == role
            made[role] = body["token"]
        [row] = [e for e in await audited_as(ledger, "token.create", f"token:{admin.name}")
                 if e.target == f"operator-{suffix}"]  # fmt: skip
        assert row.outcome == "ok"
        assert made["operator"] not in orjson.dumps(row.detail).decode()

        # A viewer may look, not change anything.
        viewer = bearer(made["viewer"])
        replay_body = {"positions": [position]}
        async with http.post(f"{base}/dlq/replay", json=replay_body, headers=viewer) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "FORBIDDEN"
        sneaky = {"name": f"sneaky-{suffix}", "role": "admin"}
        async with http.post(f"{base}/tokens", json=sneaky, headers=viewer) as resp:
            assert resp.status == 403
        assert await audited_as(ledger, "dlq.replay", f"token:viewer-{suffix}") == []
        assert await audited_as(ledger, "token.create", f"token:viewer-{suffix}") == []

        operator = bearer(made["operator"])
        async with http.post(f"{base}/dlq/replay", json=replay_body, headers=operator) as resp:
            assert resp.status == 200
            replayed = await resp.json()
        assert replayed == {"selected": [position], "dry_run": False, "replayed": 1,
                            "failed": []}  # fmt: skip
        [row] = await audited_as(ledger, "dlq.replay", f"token:operator-{suffix}")
        assert row.outcome == "ok" and row.target == pipeline.settings.dlq_topic
        assert row.detail == {"records": [position], "corrected": False}
