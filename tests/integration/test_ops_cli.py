"""The ops commands through the CLI entry point, against the real broker, PostgreSQL,
worker and sandbox: publish, import, dlq list/show/replay, and the publisher API."""

from __future__ import annotations

import asyncio
import csv
import getpass
import io
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from click.testing import CliRunner, Result

from streams.cli.dlq_cmd import CONFIRM_ABOVE
from streams.cli.main import cli
from streams.client import InvoicePublisher
from streams.demo.feed import SELLERS, generate, issued_event, make_invoice
from streams.errors import SchemaViolationError, ValidationFailedError
from streams.local.processes import free_port
from streams.settings import Settings
from streams.validation.today import beijing_today

from .conftest import Pipeline, read_topic

pytestmark = pytest.mark.integration

RUN = random.randrange(10**8, 10**9 - 1)
_numbers = iter(range(1, 10**6))


def new_invoice(seller: int = 0) -> dict[str, Any]:
    today = beijing_today()
    number = f"{today:%y}{SELLERS[seller][2]}2{RUN:09d}{next(_numbers):06d}"
    return make_invoice(random.Random(number), seller_index=seller, number=number,
                        issue_date=today)  # fmt: skip


def key_of(invoice: dict[str, Any]) -> tuple[str, str]:
    return invoice["seller"]["tax_id"], invoice["invoice_number"]


@pytest.fixture(scope="module")
def env(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    s = pipeline.settings
    return {
        "INVOICE_SYNC_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "INVOICE_SYNC_DATABASE_URL": s.database_url.get_secret_value(),
        "INVOICE_SYNC_TOPIC_PREFIX": s.topic_prefix,
        "INVOICE_SYNC_DATA_DIR": str(tmp_path_factory.mktemp("cli")),
    }


async def invoke(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    """CliRunner is synchronous and the commands call asyncio.run: run it in a thread
    so this loop keeps serving the in-process sandbox meanwhile."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=env, input=stdin)


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.25)


async def dlq_json(env: dict[str, str], *filters: str) -> dict[str, Any]:
    result = await invoke(env, "dlq", "list", "--json", *filters)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = orjson.loads(result.stdout)
    return doc


async def confirmations(settings: Settings, key: tuple[str, str]) -> int:
    wanted = f"{key[0]}:{key[1]}".encode()
    return sum(m.key == wanted for m in await read_topic(settings, settings.confirmed_topic))


async def test_publisher_validates_before_sending_and_waits_for_the_ack(
    pipeline: Pipeline,
) -> None:
    good, bad, broken = new_invoice(), new_invoice(1), new_invoice(2)
    bad["total_tax"] = "0.01"
    del broken["lines"]
    async with InvoicePublisher(pipeline.settings) as publisher:
        with pytest.raises(ValidationFailedError) as rejected:
            await publisher.invoice_issued(bad)
        assert rejected.value.field == "invoice.total_tax"
        with pytest.raises(SchemaViolationError) as malformed:
            await publisher.invoice_issued(broken)
        assert malformed.value.field == "invoice.lines"
        sent = await publisher.invoice_issued(good, source="billing-test")
    assert sent.key == "{}:{}".format(*key_of(good))
    assert sent.topic == pipeline.settings.issued_topic and sent.offset >= 0
    store = pipeline.sandbox.store
    await eventually(lambda: store.stored(key_of(good)) is not None)
    issued = await read_topic(pipeline.settings, pipeline.settings.issued_topic)
    keys = {m.key for m in issued}
    assert "{}:{}".format(*key_of(bad)).encode() not in keys  # nothing sent for the bad one


async def test_dead_letter_is_listed_shown_and_replayed_once(
    pipeline: Pipeline, env: dict[str, str], tmp_path: Path
) -> None:
    settings, store = pipeline.settings, pipeline.sandbox.store
    invoice = new_invoice(3)
    seller, number = key = key_of(invoice)
    good_event = issued_event(invoice)
    spoiled = orjson.loads(orjson.dumps(good_event))
    spoiled["invoice"]["total_amount"] = "0.01"
    async with InvoicePublisher(settings) as publisher:
        await publisher.publish_raw(f"{seller}:{number}".encode(), orjson.dumps(spoiled))

    async def dead_lettered(n: int) -> bool:
        return bool((await dlq_json(env, "--invoice", number))["total"] >= n)

    await eventually(lambda: dead_lettered(1))
    doc = await dlq_json(env, "--invoice", number, "--reason", "validation")
    assert doc["by_reason"] == {"VALIDATION": 1}
    record = doc["records"][0]
    assert record["seller_tax_id"] == seller and record["field"] == "invoice.total_amount"
    listed = await invoke(env, "dlq", "list", "--seller", seller, "--invoice", number)
    assert record["position"] in listed.output and "VALIDATION 1" in listed.output
    later = await invoke(env, "dlq", "list", "--invoice", number, "--since", "2999-01-01")
    assert "no dead letters match" in later.output
    assert (await dlq_json(env, "--invoice", number, "--until", "2999-01-01"))["total"] == 1

    shown = await invoke(env, "dlq", "show", record["position"])
    assert shown.exit_code == 0, shown.output
    assert "reason_code: VALIDATION" in shown.output and "source_offset: " in shown.output
    assert '"total_amount": "0.01"' in shown.output
    payload = await invoke(env, "dlq", "show", record["position"], "--payload-only")
    assert orjson.loads(payload.stdout) == spoiled

    # Unchanged, it fails again and goes back to the DLQ.
    again = await invoke(env, "dlq", "replay", "--offset", record["position"])
    assert again.exit_code == 0, again.output
    await eventually(lambda: dead_lettered(2))
    dry = await invoke(env, "dlq", "replay", "--invoice", number, "--dry-run")
    assert "2 dead letters selected" in dry.output and "nothing was published" in dry.output

    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(orjson.dumps(good_event))
    # Twice, back to back: the second may meet the first still in flight.
    for _ in range(2):
        done = await invoke(env, "dlq", "replay", "--offset", record["position"],
                            "--payload", str(fixed))  # fmt: skip
        assert done.exit_code == 0, done.output
        assert "replayed 1 of 1" in done.output
    await eventually(lambda: _confirmed_n(settings, key, 2))
    assert store.stored(key) is not None
    assert store.post_count(key) == 1

    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT who, dlq_partition, dlq_offset, invoice_key, corrected, result "
            "FROM dlq_replays WHERE dlq_topic = $1 AND invoice_key = $2 ORDER BY id",
            settings.dlq_topic, f"{seller}:{number}",
        )  # fmt: skip
    finally:
        await conn.close()
    partition, offset = (int(x) for x in record["position"].split(":"))
    assert [(r["corrected"], r["result"]) for r in rows] == [
        (False, "published"), (True, "published"), (True, "published")
    ]  # fmt: skip
    assert {(r["who"], r["dlq_partition"], r["dlq_offset"]) for r in rows} == {
        (getpass.getuser(), partition, offset)
    }
    issued = await read_topic(settings, settings.issued_topic)
    replayed = [dict(m.headers) for m in issued if m.key == f"{seller}:{number}".encode()]
    assert [h.get("replayed_from_dlq_offset") for h in replayed] == [
        None, *[record["position"].encode()] * 3
    ]  # fmt: skip


async def _confirmed_n(settings: Settings, key: tuple[str, str], n: int) -> bool:
    return await confirmations(settings, key) >= n


async def test_an_empty_selection_says_so(env: dict[str, str]) -> None:
    nothing = "00000000000000000000"
    listed = await invoke(env, "dlq", "list", "--invoice", nothing)
    assert listed.exit_code == 0 and "no dead letters match (invoice=" in listed.output
    replay = await invoke(env, "dlq", "replay", "--invoice", nothing)
    assert replay.exit_code == 0 and "nothing to replay" in replay.output
    missing = await invoke(env, "dlq", "show", "0:999999")
    assert missing.exit_code == 1 and "no record at 0:999999" in missing.output
    unselected = await invoke(env, "dlq", "replay")
    assert unselected.exit_code == 2 and "--all" in unselected.output


def to_csv(invoices: list[dict[str, Any]]) -> str:
    columns = ["invoice_number", "kind", "invoice_type", "issue_date", "seller_tax_id",
               "seller_name", "buyer_tax_id", "buyer_name", "buyer_natural_person",
               "total_amount", "total_tax", "total_with_tax", "line_no", "item_name",
               "tax_code", "quantity", "unit", "unit_price", "amount", "tax_rate",
               "tax_amount"]  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for inv in invoices:
        head = [inv["invoice_number"], inv["kind"], inv["invoice_type"], inv["issue_date"],
                inv["seller"]["tax_id"], inv["seller"]["name"], inv["buyer"]["tax_id"] or "",
                inv["buyer"]["name"], str(inv["buyer"]["natural_person"]).lower(),
                inv["total_amount"], inv["total_tax"], inv["total_with_tax"]]  # fmt: skip
        for line in inv["lines"]:
            writer.writerow([*head, *(line[c] for c in columns[12:])])
    return out.getvalue()


async def test_import_publishes_nothing_when_a_row_is_bad(
    pipeline: Pipeline, env: dict[str, str], tmp_path: Path
) -> None:
    invoices = [new_invoice(i) for i in range(3)]
    good_csv = to_csv(invoices)
    rows = good_csv.splitlines()
    bad_row = len(invoices[0]["lines"]) + 2  # first line of the second invoice
    rows[bad_row - 1] = rows[bad_row - 1].replace(",*", ",", 1)  # item name without *category*
    path = tmp_path / "invoices.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = await invoke(env, "import", str(path))
    assert result.exit_code != 0
    assert f"row {bad_row}, item_name: " in result.output
    assert "nothing was published" in result.output
    issued = await read_topic(pipeline.settings, pipeline.settings.issued_topic)
    keys = {m.key for m in issued}
    assert not keys & {"{}:{}".format(*key_of(inv)).encode() for inv in invoices}

    path.write_text(good_csv, encoding="utf-8")
    result = await invoke(env, "import", str(path))
    assert result.exit_code == 0, result.output
    assert "published 3 invoices" in result.output
    store = pipeline.sandbox.store
    await eventually(lambda: all(store.stored(key_of(inv)) for inv in invoices))
    assert [store.post_count(key_of(inv)) for inv in invoices] == [1, 1, 1]
    trail = await invoke(env, "audit", "--action", "import", "--json")
    assert str(path) in trail.output and '"published":3' in trail.output


async def test_publish_sample_confirms_every_invoice(
    pipeline: Pipeline, env: dict[str, str]
) -> None:
    run = RUN + 1
    result = await invoke(env, "publish", "--sample", "20", "--run-id", str(run))
    assert result.exit_code == 0, result.output
    assert "published 20 invoices" in result.output
    items = list(generate(20, today=beijing_today(), run_id=run, invalid_fraction=0.0,
                          resend_fraction=0.0))  # fmt: skip
    keys = {tuple(item.key.decode().split(":", 1)) for item in items}
    assert len(keys) == 20
    store = pipeline.sandbox.store
    await eventually(lambda: all(store.stored(k) for k in keys), timeout=90)  # type: ignore[arg-type]
    assert all(store.post_count(k) == 1 for k in keys)  # type: ignore[arg-type]
    trail = await invoke(env, "audit", "--action", "publish.sample", "--json", "--limit", "10")
    [row] = [r for r in audit_rows(trail) if r["detail"]["run_id"] == run]
    assert row["actor"] == f"cli:{getpass.getuser()}" and row["outcome"] == "ok"
    assert row["target"] == pipeline.settings.issued_topic
    assert row["detail"]["published"] == row["detail"]["requested"] == 20


async def test_import_reports_every_bad_row_and_skip_invalid_publishes_the_rest(
    pipeline: Pipeline, env: dict[str, str], tmp_path: Path
) -> None:
    invoices = [new_invoice(i) for i in range(4)]
    rows = to_csv(invoices).splitlines()
    first_of = [2]  # data rows are numbered from 2 (row 1 is the header)
    for inv in invoices[:-1]:
        first_of.append(first_of[-1] + len(inv["lines"]))
    bad_rows = [first_of[1], first_of[3]]
    for row in bad_rows:
        rows[row - 1] = rows[row - 1].replace(",*", ",", 1)  # item name without *category*
    path = tmp_path / "two-bad.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    refused = await invoke(env, "import", str(path))
    assert refused.exit_code == 1
    for row in bad_rows:
        assert f"row {row}, item_name: " in refused.output
    assert "nothing was published" in refused.output

    skipped = await invoke(env, "import", str(path), "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert f"row {bad_rows[0]}, item_name: " in skipped.output
    assert "published 2 invoices" in skipped.output
    store = pipeline.sandbox.store
    good, bad = [invoices[0], invoices[2]], [invoices[1], invoices[3]]
    await eventually(lambda: all(store.stored(key_of(inv)) for inv in good))
    issued = {m.key for m in await read_topic(pipeline.settings, pipeline.settings.issued_topic)}
    assert not issued & {"{}:{}".format(*key_of(inv)).encode() for inv in bad}
    trail = await invoke(env, "audit", "--action", "import", "--json")
    assert '"published":2' in trail.output and '"skipped_rows":2' in trail.output


async def test_import_of_a_jsonl_file(
    pipeline: Pipeline, env: dict[str, str], tmp_path: Path
) -> None:
    invoice, event = new_invoice(1), issued_event(new_invoice(2))
    path = tmp_path / "invoices.jsonl"
    path.write_bytes(orjson.dumps(invoice) + b"\n\n" + orjson.dumps(event) + b"\n")
    result = await invoke(env, "import", str(path))
    assert result.exit_code == 0, result.output
    assert "published 2 invoices from invoices.jsonl" in result.output
    store = pipeline.sandbox.store
    keys = [key_of(invoice), key_of(event["invoice"])]
    await eventually(lambda: all(store.stored(k) for k in keys))
    assert [store.post_count(k) for k in keys] == [1, 1]


def audit_rows(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def test_a_large_replay_asks_first_and_every_replay_is_audited(
    pipeline: Pipeline, env: dict[str, str]
) -> None:
    settings = pipeline.settings
    seller = SELLERS[4][0]
    spoiled = []
    for _ in range(CONFIRM_ABOVE + 1):
        event = issued_event(new_invoice(4))
        event["invoice"]["total_amount"] = "0.01"
        spoiled.append(event)
    numbers = {e["invoice"]["invoice_number"] for e in spoiled}
    async with InvoicePublisher(settings) as publisher:
        for event in spoiled:
            key = f"{seller}:{event['invoice']['invoice_number']}".encode()
            await publisher.publish_raw(key, orjson.dumps(event))

    async def all_dead() -> bool:
        doc = await dlq_json(env, "--seller", seller, "--reason", "VALIDATION")
        return numbers <= {r["invoice_number"] for r in doc["records"]}

    await eventually(all_dead, timeout=90)
    selection = ("dlq", "replay", "--seller", seller, "--reason", "VALIDATION")
    trail = ("audit", "--action", "dlq.replay", "--json", "--limit", "1000")
    before = len(audit_rows(await invoke(env, *trail)))
    declined = await invoke(env, *selection, stdin="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert f"replay {CONFIRM_ABOVE + 1}" in declined.output or "[y/N]" in declined.output
    assert len(audit_rows(await invoke(env, *trail))) == before  # nothing was replayed

    done = await invoke(env, *selection, "--yes")
    assert done.exit_code == 0, done.output
    assert "[y/N]" not in done.output and "replayed " in done.output
    [row] = audit_rows(await invoke(env, "audit", "--action", "dlq.replay", "--json",
                                    "--limit", "1"))  # fmt: skip
    assert row["actor"] == f"cli:{getpass.getuser()}" and row["outcome"] == "ok"
    assert len(row["detail"]["records"]) >= CONFIRM_ABOVE + 1


async def test_an_import_that_cannot_publish_is_audited_as_failed(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / f"unsent-{RUN}.jsonl"
    path.write_bytes(orjson.dumps(new_invoice(2)) + b"\n")
    away = {**env, "INVOICE_SYNC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    result = await invoke(away, "import", str(path))
    assert result.exit_code == 1
    assert "failed" in result.output
    [row] = audit_rows(await invoke(env, "audit", "--target", str(path), "--json"))
    assert row["action"] == "import" and row["actor"] == f"cli:{getpass.getuser()}"
    assert row["outcome"].startswith("failed: ")
    assert row["detail"] == {"invoices": 1, "skipped_rows": 0, "published": 0}
    # --outcome matches the start of the outcome: "failed" finds every failure.
    failed = audit_rows(await invoke(env, "audit", "--outcome", "failed", "--json",
                                     "--limit", "10000"))  # fmt: skip
    assert row in failed and all(r["outcome"].startswith("failed") for r in failed)
    assert row not in audit_rows(await invoke(env, "audit", "--outcome", "ok", "--json",
                                              "--target", str(path)))  # fmt: skip


@pytest.mark.parametrize("limit", ["0", "10001", "many"])
async def test_audit_limit_is_range_checked(env: dict[str, str], limit: str) -> None:
    result = await invoke(env, "audit", "--limit", limit)
    assert result.exit_code == 2
    assert "--limit" in result.output
