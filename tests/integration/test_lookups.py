"""Finding invoices, reconciling with the platform and sweeping stuck ones, through the
CLI entry point (and the worker's HTTP API) against the real broker and database."""

from __future__ import annotations

import asyncio
import csv
import io
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner, Result

from streams.cli.main import cli
from streams.demo.feed import issued_event, make_invoice
from streams.dlq.reader import dead_letters_of
from streams.validation.taxid import TAX_ID_ALPHABET, make_tax_id
from streams.validation.today import beijing_today

from .conftest import PAYLOAD_KEY, Pipeline, insert_abandoned

pytestmark = pytest.mark.integration

RNG = random.Random()
TODAY = beijing_today()
#: issue dates across months (the oldest within the platform's one-year window)
DATES = [TODAY - timedelta(days=d) for d in (0, 31, 62, 93, 124)]
FIRST, LAST = min(DATES), TODAY


def new_seller() -> str:
    """A seller of our own, so other tests' invoices never show up in ours."""
    tail = "".join(RNG.choice(TAX_ID_ALPHABET) for _ in range(9))
    return make_tax_id(f"91110108{tail}")


def number_for(day: date, serial: int) -> str:
    return f"{day:%y}112{RNG.randrange(10**9):09d}{serial:06d}"


def invoice(seller: str, day: date, serial: int) -> dict[str, Any]:
    body = make_invoice(RNG, seller_index=0, number=number_for(day, serial), issue_date=day)
    body["seller"] = {**body["seller"], "tax_id": seller}
    return body


def env(pipeline: Pipeline) -> dict[str, str]:
    s = pipeline.settings
    return {
        "INVOICE_SYNC_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "INVOICE_SYNC_DATABASE_URL": s.database_url.get_secret_value(),
        "INVOICE_SYNC_PLATFORM_URL": s.platform_url,
        "INVOICE_SYNC_PLATFORM_APP_ID": s.platform_app_id,
        "INVOICE_SYNC_PLATFORM_APP_SECRET": s.platform_app_secret.get_secret_value(),
        "INVOICE_SYNC_TOPIC_PREFIX": s.topic_prefix,
        "INVOICE_SYNC_PAYLOAD_KEY": PAYLOAD_KEY,
    }


async def run(pipeline: Pipeline, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env(pipeline))


async def publish(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for e in events:
            key = f"{e['invoice']['seller']['tax_id']}:{e['invoice']['invoice_number']}"
            await producer.send_and_wait(pipeline.settings.issued_topic, orjson.dumps(e),
                                         key=key.encode())  # fmt: skip
    finally:
        await producer.stop()


async def states(pipeline: Pipeline, seller: str) -> dict[str, tuple[str, str | None]]:
    conn = await asyncpg.connect(pipeline.settings.database_url.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT invoice_number, state, platform_ref FROM invoices WHERE seller_tax_id = $1",
            seller,
        )
    finally:
        await conn.close()
    return {r["invoice_number"]: (r["state"], r["platform_ref"]) for r in rows}


async def until(pipeline: Pipeline, seller: str, want: dict[str, str], timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        now = await states(pipeline, seller)
        if all(now.get(n, ("", None))[0] == s for n, s in want.items()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"ledger never reached {want}: {await states(pipeline, seller)}")


class Feed:
    def __init__(self, seller: str, confirmed: list[dict[str, Any]], failed: str) -> None:
        self.seller, self.confirmed, self.failed = seller, confirmed, failed


@pytest.fixture(scope="module")
async def feed(pipeline: Pipeline) -> Feed:
    """Five good invoices over five months and one with wrong totals, all settled."""
    seller = new_seller()
    good = [invoice(seller, day, n) for n, day in enumerate(DATES)]
    bad = invoice(seller, TODAY, 99)
    bad["total_with_tax"] = "1.00"
    await publish(pipeline, [issued_event(i) for i in [*good, bad]])
    want = {i["invoice_number"]: "CONFIRMED" for i in good} | {bad["invoice_number"]: "FAILED"}
    await until(pipeline, seller, want)
    return Feed(seller, good, bad["invoice_number"])


async def test_status_of_an_unknown_invoice_says_so_and_fails(pipeline: Pipeline) -> None:
    result = await run(pipeline, "status", "26119999999999999999")
    assert result.exit_code == 1
    assert "is not in the ledger" in result.output
    assert "invoice-sync dlq list --invoice 26119999999999999999" in result.output


async def dead_lettered_status(pipeline: Pipeline, feed: Feed) -> dict[str, Any]:
    """``status --json`` of the failed invoice once its dead letter is on the topic (the
    ledger records the failure just before the dead letter is written)."""
    async with asyncio.timeout(60):
        while True:
            result = await run(pipeline, "status", feed.failed, "--seller", feed.seller, "--json")
            assert result.exit_code == 0, result.output
            [view] = orjson.loads(result.stdout)
            if view["dead_letter"]["records"]:
                return dict(view)
            await asyncio.sleep(0.5)


async def test_status_of_a_failed_invoice_shows_its_dead_letter(
    pipeline: Pipeline, feed: Feed
) -> None:
    view = await dead_lettered_status(pipeline, feed)
    assert view["state"] == "FAILED"
    letter = view["dead_letter"]
    assert letter["reason_code"] == "VALIDATION"
    assert letter["command"] == f"invoice-sync dlq list --invoice {feed.failed}"
    assert letter["note"] is None
    [record] = letter["records"]
    assert record["topic"] == pipeline.settings.dlq_topic
    assert record["reason_code"] == "VALIDATION"
    assert record["position"] == f"{record['partition']}:{record['offset']}"
    assert record["reason"] and record["failed_at"]
    assert view["next_step"]

    text = await run(pipeline, "status", feed.failed)
    assert (f"dead letter:  {pipeline.settings.dlq_topic} partition {record['partition']} "
            f"offset {record['offset']}, VALIDATION") in text.output  # fmt: skip

    # The worker's HTTP API answers with the same function.
    url = f"http://127.0.0.1:{pipeline.worker.http_port}/invoices/{feed.seller}/{feed.failed}"
    async with aiohttp.ClientSession(headers=pipeline.auth) as http, http.get(url) as resp:
        assert resp.status == 200
        assert (await resp.json())["dead_letter"] == letter


async def test_a_large_dlq_is_searched_from_its_newest_records(
    pipeline: Pipeline, feed: Feed
) -> None:
    await dead_lettered_status(pipeline, feed)
    found = await dead_letters_of(pipeline.settings, feed.failed, feed.seller)
    assert [r.invoice_number for r in found.records] == [feed.failed]
    # With no records of each partition to search, the answer says the search was partial.
    older = await dead_letters_of(pipeline.settings, feed.failed, feed.seller, tail=0)
    assert older.records == [] and older.unread > 0
    assert older.note is not None and "the DLQ is large" in older.note


async def test_invoices_pages_through_a_sellers_history(pipeline: Pipeline, feed: Feed) -> None:
    seen: list[dict[str, Any]] = []
    cursor: list[str] = []
    for _ in range(5):
        result = await run(pipeline, "invoices", "--seller", feed.seller, "--from",
                           FIRST.isoformat(), "--to", LAST.isoformat(), "--page-size", "2",
                           "--json", *cursor)  # fmt: skip
        assert result.exit_code == 0, result.output
        page = orjson.loads(result.stdout)
        assert len(page["items"]) <= 2
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        cursor = ["--after", page["next_cursor"]]
    assert len(seen) == 6
    keys = [(v["issue_date"], v["invoice_number"]) for v in seen]
    assert keys == sorted(keys)
    assert {v["invoice_number"] for v in seen} == {
        *(i["invoice_number"] for i in feed.confirmed), feed.failed}  # fmt: skip
    # One state, every page, as CSV.
    result = await run(pipeline, "invoices", "--seller", feed.seller, "--from", FIRST.isoformat(),
                       "--to", LAST.isoformat(), "--state", "CONFIRMED", "--all", "--csv",
                       "--page-size", "2")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 5
    assert {r["state"] for r in rows} == {"CONFIRMED"}
    # The table, a month at a time.
    result = await run(pipeline, "invoices", "--seller", feed.seller, "--from",
                       DATES[1].isoformat(), "--to", DATES[1].isoformat())  # fmt: skip
    assert feed.confirmed[1]["invoice_number"] in result.stdout
    assert "1 invoices" in result.stdout
    bad = await run(pipeline, "invoices", "--seller", feed.seller, "--from", "2026-02-30",
                    "--to", "2026-03-01")  # fmt: skip
    assert bad.exit_code == 2
    garbled = await run(pipeline, "invoices", "--seller", feed.seller, "--from", "2020-01-01",
                        "--to", "2030-01-01", "--after", "nonsense")  # fmt: skip
    assert garbled.exit_code == 2
    assert "not a page cursor" in garbled.output


async def test_the_api_serves_the_same_pages(pipeline: Pipeline, feed: Feed) -> None:
    base = f"http://127.0.0.1:{pipeline.worker.http_port}/invoices"
    query = {"seller_tax_id": feed.seller, "from": FIRST.isoformat(), "to": LAST.isoformat()}
    async with aiohttp.ClientSession(headers=pipeline.auth) as http:
        items: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        while True:
            async with http.get(base, params={**query, "page_size": "4", **token}) as resp:
                assert resp.status == 200
                body = await resp.json()
            items += body["items"]
            if body["next_page_token"] is None:
                break
            token = {"page_token": body["next_page_token"]}
        assert len(items) == 6
        for bad in ({"page_size": "1001"}, {"page_size": "0"}, {"page_size": "x"},
                    {"from": "yesterday"}, {"state": "LOST"}, {"page_token": "%%%"}):  # fmt: skip
            async with http.get(base, params={**query, **bad}) as resp:
                assert resp.status == 400, bad
                problem = await resp.json()
                assert problem["code"] == "BAD_REQUEST"
                assert problem["field"] == next(iter(bad))
        number = feed.confirmed[0]["invoice_number"]
        async with http.get(f"{base}/{feed.seller}/{number}") as resp:
            assert resp.status == 200
            assert (await resp.json())["state"] == "CONFIRMED"


async def test_reconcile_over_a_thousand_platform_items(
    pipeline: Pipeline, feed: Feed, tmp_path: Path
) -> None:
    store = pipeline.sandbox.store
    # 1,100 invoices the platform holds but this pipeline never sent (issued by hand).
    for serial in range(1100):
        day = DATES[serial % len(DATES)]
        outcome = store.submit(invoice(feed.seller, day, 1000 + serial), asynchronous=False,
                               processing_seconds=None)  # fmt: skip
        assert type(outcome).__name__ == "Accepted", outcome
    # And one the platform lost: no API deletes, so reach into the sandbox's store.
    lost = feed.confirmed[2]["invoice_number"]
    lost_ref = store.stored((feed.seller, lost))
    assert lost_ref is not None
    del store._stored[(feed.seller, lost)]
    report = tmp_path / "report.json"
    args = ["reconcile", "--seller", feed.seller, "--from", FIRST.isoformat(),
            "--to", LAST.isoformat()]  # fmt: skip
    result = await run(pipeline, *args, "--report", str(report))
    assert result.exit_code == 0, result.output
    body = orjson.loads(report.read_bytes())
    assert body["counts"] == {"matching": 4, "missing_on_platform": 1, "unknown_to_ledger": 1100,
                              "amounts_differ": 0, "not_confirmed_in_ledger": 0}  # fmt: skip
    missing = [i for i in body["invoices"] if i["bucket"] == "missing_on_platform"]
    assert [i["invoice_number"] for i in missing] == [lost]
    assert "missing_on_platform" in result.stdout
    assert lost in result.stdout
    csv_report = tmp_path / "report.csv"
    await run(pipeline, *args, "--report", str(csv_report))
    assert len(list(csv.DictReader(io.StringIO(csv_report.read_text())))) == 1105
    # --repair sends the lost one again; the worker confirms it with a new reference.
    repaired = await run(pipeline, *args, "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "1 invoices set back to SUBMITTING" in repaired.stdout
    trail = await run(pipeline, "audit", "--action", "reconcile.repair", "--json", "--limit", "1")
    [row] = [orjson.loads(line) for line in trail.stdout.splitlines()]
    assert row["actor"].startswith("cli:") and row["target"] == feed.seller
    assert row["outcome"] == "ok" and row["detail"]["redriven"] == [lost]
    await until(pipeline, feed.seller, {lost: "CONFIRMED"})
    new = store.stored((feed.seller, lost))
    assert new is not None
    assert new.platform_ref != lost_ref.platform_ref
    assert (await states(pipeline, feed.seller))[lost] == ("CONFIRMED", new.platform_ref)
    again = await run(pipeline, *args, "--report", str(report))
    assert orjson.loads(report.read_bytes())["counts"]["matching"] == 5, again.output
    bad = await run(pipeline, *args, "--report", str(tmp_path / "report.txt"))
    assert bad.exit_code == 2


async def test_sweep_re_drives_a_stuck_invoice(pipeline: Pipeline) -> None:
    seller = new_seller()
    body = invoice(seller, TODAY, 7)
    number = body["invoice_number"]
    # The worker's own loop would only take it after INVOICE_SYNC_RESUME_STALE_SECONDS.
    await insert_abandoned(pipeline.settings.database_url.get_secret_value(), body)
    dry = await run(pipeline, "sweep", "--older-than", "100", "--seller", seller, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert number in dry.stdout
    assert "dry run" in dry.stdout
    assert (await states(pipeline, seller))[number][0] == "SUBMITTING"
    swept = await run(pipeline, "sweep", "--older-than", "100", "--seller", seller)
    assert swept.exit_code == 0, swept.output
    assert "re-published 1" in swept.stdout
    trail = await run(pipeline, "audit", "--action", "sweep", "--json", "--limit", "50")
    rows = [orjson.loads(line) for line in trail.stdout.splitlines()]
    mine = [r for r in rows if r["target"] == seller]
    assert [(r["actor"][:4], r["outcome"], r["detail"]["republished"]) for r in mine] == [
        ("cli:", "ok", [f"{seller}:{number}"])
    ]
    await until(pipeline, seller, {number: "CONFIRMED"})
    assert pipeline.sandbox.store.post_count((seller, number)) == 1
    calm = await run(pipeline, "sweep", "--older-than", "100", "--seller", seller)
    assert "no invoice stuck" in calm.stdout


async def test_commands_have_help(pipeline: Pipeline) -> None:
    for command in ("status", "invoices", "reconcile", "sweep"):
        result = await run(pipeline, command, "--help")
        assert result.exit_code == 0
        assert "Usage:" in result.output
