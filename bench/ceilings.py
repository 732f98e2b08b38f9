"""What the machine can do at all, on the same broker, sandbox and database.

- Kafka: a raw aiokafka consume→produce loop (no decoding), committing per batch.
- HTTP: signed POSTs at the pipeline's concurrency from a child process (``python -m
  bench.ceilings http ...``) so that, as in the pipeline, the client and the
  in-process sandbox do not share one interpreter. The ceiling is the issue's raw
  aiohttp loop; the same loop through our ``PlatformClient`` (pyreqwest) is shown
  beside it, as the cost of one POST in the worker.
- faust: the worker's own faust app and agent loop with nothing behind it, in a
  child process (``bench/faust_floor.py``): the floor under the worker's CPU per event.
- PostgreSQL: batched ``INSERT ... SELECT FROM unnest(...)`` of invoice-shaped rows,
  one transaction per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Literal, cast, get_args

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.procstat import cpu_seconds
from streams.demo.feed import FeedItem, generate
from streams.kafka.topics import ensure_topics
from streams.platform.client import API, PlatformClient
from streams.platform.signing import signed_headers
from streams.validation.today import beijing_today
from streams.worker.run import share_the_gil, use_uvloop

_INVOICES = f"{API}/invoices"


@dataclass(frozen=True)
class Ceiling:
    name: str
    count: int
    seconds: float
    #: CPU of the process that ran the loop, per item (ms); None when not measured
    cpu_ms_per_item: float | None = None
    #: CPU of this process per item (ms) while the loop ran: the in-process sandbox's
    server_cpu_ms_per_item: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def publish(bootstrap: str, topic: str, items: list[FeedItem]) -> dict[bytes, float]:
    """Send ``items`` as a billing system would; returns each key's send time (epoch s)."""
    sent_at: dict[bytes, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for item in items:
            sent_at[item.key] = time.time()
            pending.append(await producer.send(topic, item.value, key=item.key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent_at


async def kafka_ceiling(bootstrap: str, items: list[FeedItem], *, partitions: int) -> Ceiling:
    prefix = f"bench-raw-{uuid.uuid4().hex[:8]}."
    source, sink = f"{prefix}in", f"{prefix}out"
    await ensure_topics(bootstrap, [source, sink], partitions=partitions, replication=1)
    await publish(bootstrap, source, items)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Tansu joins a group in about half the session timeout.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        started: float | None = None
        while done < len(items):
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            if not batches:
                continue
            if started is None:
                started = time.perf_counter()  # group join is not part of the loop
            acks = [
                await producer.send(sink, m.value, key=m.key)
                for messages in batches.values()
                for m in messages
            ]
            await asyncio.gather(*acks)
            offsets: dict[TopicPartition, int] = {
                tp: messages[-1].offset + 1 for tp, messages in batches.items()
            }
            await consumer.commit(offsets)
            done += len(acks)
        assert started is not None
        return Ceiling("kafka", done, time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


async def faust_floor(
    bootstrap: str, items: list[FeedItem], *, partitions: int, data_dir: Path
) -> Ceiling:
    """The worker's faust app and agent loop, acking each batch at once, in a child
    process over a published backlog (``bench/faust_floor.py``)."""
    prefix = f"bench-faust-{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, [f"{prefix}invoices.issued"], partitions=partitions,
                        replication=1)  # fmt: skip
    await publish(bootstrap, f"{prefix}invoices.issued", items)
    env = {
        **os.environ,
        "MALLOC_ARENA_MAX": "2",
        "INVOICE_SYNC_KAFKA_BOOTSTRAP": bootstrap,
        "INVOICE_SYNC_TOPIC_PREFIX": prefix,
        "INVOICE_SYNC_CONSUMER_GROUP": f"{prefix}group",
        "INVOICE_SYNC_KAFKA_SESSION_TIMEOUT": "6",
        "INVOICE_SYNC_DATA_DIR": str(data_dir / "faust-floor"),
    }
    result_file = data_dir / "faust-floor.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.faust_floor", str(len(items)), str(result_file), env=env,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.wait_for(proc.wait(), timeout=120 + len(items) / 500)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the faust floor loop did not finish in time") from None
    if proc.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"faust floor loop exited with {proc.returncode} and no result")
    result = orjson.loads(result_file.read_bytes())
    return Ceiling("faust", int(result["count"]), float(result["seconds"]),
                   float(result["cpu_ms_per_item"]))  # fmt: skip


#: the HTTP loops: the issue's raw aiohttp loop, and the same POSTs through our client
HttpClient = Literal["aiohttp", "ours"]


async def http_ceiling(
    url: str, app_id: str, secret: str, *, count: int, concurrency: int, run_id: int,
    client: HttpClient = "aiohttp",
) -> Ceiling:  # fmt: skip
    """The POST loop in a child process; returns what it measured, with what this process,
    which hosts the sandbox, spent per POST meanwhile."""
    server0 = cpu_seconds(os.getpid())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ceilings", "http", url, app_id, str(count),
        str(concurrency), str(run_id), client,
        env={**os.environ, "BENCH_APP_SECRET": secret},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"HTTP ceiling loop exited with {proc.returncode}")
    server = cpu_seconds(os.getpid()) - server0
    result = orjson.loads(out.splitlines()[-1])
    count = int(result["count"])
    return Ceiling(client, count, float(result["seconds"]), float(result["cpu_ms_per_item"]),
                   server * 1000 / max(1, count))  # fmt: skip


async def _post_loop(
    url: str, app_id: str, secret: str, count: int, concurrency: int, run_id: int,
    client: HttpClient,
) -> dict[str, float]:  # fmt: skip
    invoices = [
        orjson.loads(item.value)["invoice"]
        for item in generate(count, today=beijing_today(), run_id=run_id, invalid_fraction=0,
                             red_fraction=0, resend_fraction=0)
    ]  # fmt: skip
    bodies = [orjson.dumps(invoice) for invoice in invoices]
    queue = iter(range(1, count))
    async with contextlib.AsyncExitStack() as stack:
        if client == "ours":
            ours = await stack.enter_async_context(
                PlatformClient(url, app_id, secret, max_connections=2 * concurrency)
            )

            async def post(i: int) -> None:
                await ours.submit(invoices[i], bodies[i])
        else:
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * concurrency))
            )
            post = partial(_raw_post, session, url, app_id, secret, bodies)

        async def lane() -> None:
            for i in queue:
                await post(i)

        await post(0)  # warm up: session, first connection
        cpu0, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    return {"count": count - 1, "seconds": seconds, "cpu_ms_per_item": cpu * 1000 / (count - 1)}


async def _raw_post(
    session: aiohttp.ClientSession, url: str, app_id: str, secret: str, bodies: list[bytes],
    i: int,
) -> None:  # fmt: skip
    """One signed POST as the contract wants it, its answer read and parsed: no more."""
    headers = {
        "Accept": "application/json", "Content-Type": "application/json",
        **signed_headers(app_id, secret, "POST", _INVOICES, bodies[i]),
    }  # fmt: skip
    async with session.post(url + _INVOICES, data=bodies[i], headers=headers) as response:
        answer = orjson.loads(await response.read())
    if response.status != 201:
        raise RuntimeError(f"the sandbox answered {response.status}: {answer}")


async def postgres_ceiling(dsn: str, *, rows: int, batch: int = 500) -> Ceiling:
    """Invoice-shaped rows (with a 1 KB payload) into a scratch copy of the ledger table."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS ceiling_invoices; "
            "CREATE TABLE ceiling_invoices (LIKE invoices INCLUDING ALL)"
        )
        payload = b"x" * 1000
        now = datetime.now(UTC)
        sql = """INSERT INTO ceiling_invoices (seller_tax_id, invoice_number, state,
                     content_hash, kind, issue_date, total_with_tax, payload, issued_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                     $5::text[], $6::date[], $7::numeric[], $8::bytea[], $9::timestamptz[])"""
        started = time.perf_counter()
        for first in range(0, rows, batch):
            n = min(batch, rows - first)
            numbers = [f"{first + i:020d}" for i in range(n)]
            async with conn.transaction():
                await conn.execute(
                    sql, ["91110108MA01ABCD0B"] * n, numbers, ["SUBMITTING"] * n,
                    ["h" * 64] * n, ["blue"] * n, [now.date()] * n, [Decimal("1130.00")] * n,
                    [payload] * n, [now] * n,
                )  # fmt: skip
        seconds = time.perf_counter() - started
        await conn.execute("DROP TABLE ceiling_invoices")
        return Ceiling("postgres", rows, seconds)
    finally:
        await conn.close()


def _main(argv: list[str]) -> None:
    if argv[:1] != ["http"] or len(argv) != 7 or argv[6] not in get_args(HttpClient):
        raise SystemExit("usage: python -m bench.ceilings http URL APP_ID COUNT CONCURRENCY RUN "
                         "aiohttp|ours")  # fmt: skip
    _, url, app_id, count, concurrency, run_id, client = argv
    secret = os.environ["BENCH_APP_SECRET"]
    use_uvloop()  # the worker's event loop, so a POST costs the client what it costs the worker
    share_the_gil()  # and its GIL hand-over, for pyreqwest's thread in our client's loop
    result = asyncio.run(_post_loop(url, app_id, secret, int(count), int(concurrency),
                                    int(run_id), cast(HttpClient, client)))  # fmt: skip
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    _main(sys.argv[1:])
