"""Billing publishes with a plain aiokafka producer; finance consumes with a plain
consumer; the sandbox's own record says what reached the platform."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.demo.feed import BUYERS, EXPECTED_CODES, FeedItem, generate, issued_event, make_invoice
from streams.events.schemas import validate_event
from streams.validation.today import beijing_today

from .conftest import APP_SECRET, PAYLOAD_KEY, Pipeline

pytestmark = pytest.mark.integration


async def publish(bootstrap: str, topic: str, items: list[FeedItem]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for item in items:
            await producer.send_and_wait(topic, item.value, key=item.key)
    finally:
        await producer.stop()


async def collect(
    pipeline: Pipeline, keys: set[bytes], timeout: float = 120.0
) -> dict[str, list[Any]]:
    """Read the output topics until every key has an outcome (or time runs out)."""
    s = pipeline.settings
    topics = {s.confirmed_topic: "confirmed", s.failed_topic: "failed", s.dlq_topic: "dlq"}
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=s.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)  # fmt: skip
    seen: dict[str, list[Any]] = {"confirmed": [], "failed": [], "dlq": []}
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                seen[topics[tp.topic]].extend(messages)
            settled = {m.key for m in seen["confirmed"]} | {m.key for m in seen["failed"]}
            if keys <= settled:
                break
    finally:
        await consumer.stop()
    return seen


@pytest.fixture(scope="module")
async def run(pipeline: Pipeline) -> tuple[list[FeedItem], dict[str, list[Any]]]:
    feed = generate(300, today=beijing_today(), run_id=random.randrange(10**9),
                    invalid_fraction=0.1, red_fraction=0.05, resend_fraction=0.05)  # fmt: skip
    items = list(feed)
    await publish(pipeline.settings.kafka_bootstrap, pipeline.settings.issued_topic, items)
    return items, await collect(pipeline, {item.key for item in items})


async def test_every_valid_invoice_is_stored_once_and_confirmed(
    pipeline: Pipeline, run: tuple[list[FeedItem], dict[str, list[Any]]]
) -> None:
    items, seen = run
    valid = {item.key for item in items if item.defect is None}
    # Other tests share the session's topics: judge only this feed's invoices.
    mine = {item.key for item in items}
    confirmed = Counter(m.key for m in seen["confirmed"] if m.key in mine)
    assert set(confirmed) == valid
    store = pipeline.sandbox.store
    for key in valid:
        seller, number = key.decode().split(":")
        assert store.stored((seller, number)) is not None, key
    assert store.stored_count() >= len(valid)
    # Re-sends are answered again, so a key may be confirmed more than once, but never
    # more often than it was sent.
    sent = Counter(item.key for item in items)
    assert all(confirmed[key] <= sent[key] for key in valid)
    for message in seen["confirmed"]:
        event = orjson.loads(message.value)
        validate_event("invoice.confirmed", event)


async def test_every_invalid_invoice_fails_with_its_reason_and_is_dead_lettered(
    pipeline: Pipeline, run: tuple[list[FeedItem], dict[str, list[Any]]]
) -> None:
    items, seen = run
    bad = [item for item in items if item.defect is not None]
    assert len({EXPECTED_CODES[item.defect] for item in bad if item.defect}) >= 3
    failed = {m.key: orjson.loads(m.value) for m in seen["failed"]}
    for item in bad:
        assert item.defect is not None
        event = failed[item.key]
        validate_event("invoice.failed", event)
        assert event["reason_code"] == EXPECTED_CODES[item.defect], item.defect
        assert event["dead_lettered"] is True
    letters = {m.value: dict(m.headers) for m in seen["dlq"]}
    for item in bad:
        assert item.value in letters, "the DLQ keeps the original bytes"
        assert letters[item.value]["reason_code"].decode() == EXPECTED_CODES[item.defect or ""]
    assert not any(pipeline.sandbox.store.post_count(tuple(i.key.decode().split(":")))
                   for i in bad)  # fmt: skip


async def test_ledger_holds_every_invoice_in_a_final_state_with_history(
    pipeline: Pipeline, run: tuple[list[FeedItem], dict[str, list[Any]]]
) -> None:
    items, _ = run
    valid = {item.key.decode() for item in items if item.defect is None}
    conn = await asyncpg.connect(pipeline.settings.database_url.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT seller_tax_id || ':' || invoice_number AS key, state, platform_ref "
            "FROM invoices WHERE seller_tax_id || ':' || invoice_number = ANY($1::text[])",
            list(valid),
        )
        states = {row["key"]: row["state"] for row in rows}
        assert set(states) == valid
        assert set(states.values()) == {"CONFIRMED"}
        history = await conn.fetchval(
            "SELECT count(*) FROM invoice_history "
            "WHERE seller_tax_id || ':' || invoice_number = ANY($1::text[])",
            list(valid),
        )
        assert history >= 2 * len(valid)
    finally:
        await conn.close()


async def test_worker_http_api_answers_where_an_invoice_is(
    pipeline: Pipeline, run: tuple[list[FeedItem], dict[str, list[Any]]]
) -> None:
    items, _ = run
    key = next(item.key for item in items if item.defect is None)
    seller, number = key.decode().split(":")
    base = f"http://127.0.0.1:{pipeline.worker.http_port}"
    async with aiohttp.ClientSession(headers=pipeline.auth) as http:
        async with http.get(f"{base}/invoices/{seller}/{number}") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["state"] == "CONFIRMED"
        assert [h["to_state"] for h in body["history"]][-1] == "CONFIRMED"
        async with http.get(f"{base}/invoices/{seller}/00000000000000000000") as resp:
            assert resp.status == 404
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{base}/invoices/{seller}/{number}") as resp:
            assert resp.status == 401
        async with anonymous.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert "invoice_sync_invoices_confirmed_total" in await resp.text()


async def test_logs_never_show_secrets_or_buyer_tax_ids(
    pipeline: Pipeline, run: tuple[list[FeedItem], dict[str, list[Any]]]
) -> None:
    """A full run, with validation failures that name buyer ids, leaves no secret and no
    buyer tax id in the worker's log."""
    bad = make_invoice(
        random.Random(3),
        seller_index=0,
        issue_date=beijing_today(),
        number=f"{beijing_today():%y}11" + "2" + f"{random.randrange(10**15):015d}",
    )
    bad["invoice_type"] = "special"
    bad["buyer"] = {"tax_id": BUYERS[0][0].lower(), "name": BUYERS[0][1], "natural_person": False}
    item = FeedItem(
        f"{bad['seller']['tax_id']}:{bad['invoice_number']}".encode(),
        orjson.dumps(issued_event(bad)),
        "lower_case_buyer",
    )
    await publish(pipeline.settings.kafka_bootstrap, pipeline.settings.issued_topic, [item])
    seen = await collect(pipeline, {item.key})
    assert any(m.key == item.key for m in seen["failed"])
    log = pipeline.worker.log_path.read_text(errors="replace")
    assert "failed validation" in log  # the line that would have carried the id
    for secret in (APP_SECRET, PAYLOAD_KEY.split(":", 1)[1]):
        assert secret not in log
    for tax_id, _, _ in BUYERS:
        if tax_id:
            assert tax_id not in log and tax_id.lower() not in log
