"""The platform sandbox over loopback: contract answers, faults, exactly-once storage.

Time is a fake clock the test moves, never a sleep: receipts, quotas, maintenance
windows and the auth window all read it.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner
from multidict import CIMultiDictProxy
from yarl import URL

from streams.platform.signing import sign
from streams.sandbox.auth import Authenticator
from streams.sandbox.faults import Faults, MaintenanceWindow
from streams.sandbox.server import SandboxServer
from streams.validation.taxid import make_tax_id

from .invoice_samples import blue_invoice

APPS = {"app-a": "secret-a", "app-b": "secret-b"}
SELLER = "91110000600037341L"
BUYER = make_tax_id("91310000MA1FL0000")


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Client:
    """Signs like the contract says; ``path`` is sent exactly as given."""

    def __init__(self, session: aiohttp.ClientSession, server: SandboxServer, clock: FakeClock):
        self.session, self.base, self.clock = session, server.url, clock

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        app_id: str = "app-a",
        secret: str | None = None,
        nonce: str | None = None,
        skew: float = 0.0,
        timeout: float = 5.0,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        raw = b"" if body is None else orjson.dumps(body)
        stamp = str(int((self.clock().timestamp() + skew) * 1000))
        nonce = nonce or uuid.uuid4().hex
        signature = sign(secret or APPS[app_id], method, path, stamp, nonce, raw)
        headers = {
            "X-App-Id": app_id,
            "X-Timestamp": stamp,
            "X-Nonce": nonce,
            "X-Signature": signature,
            "Content-Type": "application/json",
        }
        async with self.session.request(
            method,
            URL(self.base + path, encoded=True),
            data=raw,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.read()
            try:
                payload = orjson.loads(text)
            except orjson.JSONDecodeError:
                payload = text
            return response.status, payload, response.headers

    async def post(self, invoice: dict[str, Any], **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await self.call("POST", "/api/v1/invoices", invoice, **kwargs)
        return status, body


def invoice(number: str = "26112000000000012345", **changes: Any) -> dict[str, Any]:
    base = blue_invoice()
    base.update(
        invoice_number=number,
        seller={"tax_id": SELLER, "name": "北京某某科技有限公司"},
        buyer={"tax_id": BUYER, "name": "上海某某有限公司", "natural_person": False},
    )
    base.update(changes)
    return base


def red(number: str, original: str, amount: str) -> dict[str, Any]:
    tax = str((Decimal(amount) * Decimal("0.06")).quantize(Decimal("0.01")))
    total = str(Decimal(amount) + Decimal(tax))
    inv = invoice(
        number,
        kind="red",
        original_invoice_number=original,
        total_amount=amount,
        total_tax=tax,
        total_with_tax=total,
    )
    inv["lines"][0].update(quantity="-1", amount=amount, tax_amount=tax)
    return inv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(apps=APPS, faults=Faults(seed=7), admin=True, clock=clock) as s:
        yield s


@pytest.fixture
async def client(server: SandboxServer, clock: FakeClock) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(session, server, clock)


async def test_a_post_stores_once_and_counts_every_post(
    server: SandboxServer, client: Client
) -> None:
    status, body = await client.post(invoice())
    assert status == 201 and body["status"] == "ACCEPTED"
    assert datetime.fromisoformat(body["accepted_at"]).utcoffset() is not None
    key = (SELLER, "26112000000000012345")
    stored = server.store.stored(key)
    assert stored is not None and stored.platform_ref == body["platform_ref"]
    assert stored.invoice == invoice()

    status, echo = await client.post(invoice())
    assert status == 409
    assert echo == {
        "code": "ALREADY_EXISTS",
        "platform_ref": body["platform_ref"],
        "accepted_at": body["accepted_at"],
        "total_with_tax": "1060.00",
        "issue_date": "2026-11-20",
        "buyer_tax_id": BUYER,
    }
    assert server.store.stored_count() == 1
    assert server.store.post_count(key) == 2
    assert server.store.post_counts() == {key: 2}

    status, got, _ = await client.call("GET", f"/api/v1/invoices/{SELLER}/26112000000000012345")
    assert status == 200 and got["invoice"] == invoice()
    assert got["platform_ref"] == body["platform_ref"]
    assert (await client.call("GET", f"/api/v1/invoices/{SELLER}/nope"))[:2] == (
        404,
        {"code": "NOT_FOUND"},
    )


async def test_a_conflicting_repost_echoes_what_is_stored_and_overwrites_nothing(
    server: SandboxServer, client: Client
) -> None:
    await client.post(invoice())
    changed = invoice(buyer={"tax_id": None, "name": "张三", "natural_person": True})
    status, echo = await client.post(changed)
    assert (status, echo["buyer_tax_id"]) == (409, BUYER)
    stored = server.store.stored((SELLER, "26112000000000012345"))
    assert stored is not None and stored.invoice["buyer"]["tax_id"] == BUYER


def _with(path: str, value: Any) -> dict[str, Any]:
    inv = invoice()
    target: Any = inv
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DROP:
        del target[last]
    else:
        target[last] = value
    return inv


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "code", "field"),
    [
        (
            "buyer.tax_id",
            BUYER[:-1] + ("0" if BUYER[-1] != "0" else "1"),
            "INVALID_TAX_ID",
            "buyer.tax_id",
        ),
        ("seller.tax_id", SELLER.lower(), "INVALID_TAX_ID", "seller.tax_id"),
        ("total_with_tax", "1061.00", "AMOUNT_MISMATCH", "total_with_tax"),
        ("total_amount", "999.00", "AMOUNT_MISMATCH", "total_amount"),
        ("lines.0.tax_amount", "70.00", "AMOUNT_MISMATCH", "lines[0].tax_amount"),
        ("invoice_number", _DROP, "INVALID_FIELD", "invoice_number"),
        ("issue_date", "20/11/2026", "INVALID_FIELD", "issue_date"),
        ("lines", [], "INVALID_FIELD", "lines"),
        ("lines.0.amount", 1000.0, "INVALID_FIELD", "lines[0].amount"),
    ],
)
async def test_422_rules_follow_the_data_and_name_the_field(
    server: SandboxServer, client: Client, path: str, value: Any, code: str, field: str
) -> None:
    status, body = await client.post(_with(path, value))
    assert status == 422
    assert (body["code"], body["field"]) == (code, field)
    assert body["message"]
    assert server.store.stored_count() == 0


async def test_red_invoices_need_their_original_and_may_not_exceed_it(
    server: SandboxServer, client: Client
) -> None:
    blue = "26112000000000000001"
    status, body = await client.post(red("26112000000000000002", blue, "-100.00"))
    assert (status, body["code"]) == (422, "ORIGINAL_NOT_FOUND")
    assert body["field"] == "original_invoice_number"
    assert (await client.post(invoice(blue)))[0] == 201
    assert (await client.post(red("26112000000000000002", blue, "-600.00")))[0] == 201
    # 1060.00 - 636.00 remain; 530.00 is too much, 424.00 fits exactly
    status, body = await client.post(red("26112000000000000003", blue, "-500.00"))
    assert (status, body["code"], body["field"]) == (422, "RED_EXCEEDS_ORIGINAL", "total_with_tax")
    assert (await client.post(red("26112000000000000003", blue, "-400.00")))[0] == 201


@pytest.mark.parametrize(
    "case", ["bad_signature", "expired", "future", "replayed_nonce", "unknown_app"]
)
async def test_bad_credentials_are_401(server: SandboxServer, client: Client, case: str) -> None:
    cases: dict[str, dict[str, Any]] = {
        "bad_signature": {"secret": "not-the-secret"},
        "expired": {"skew": -301},
        "future": {"skew": 301},
        "unknown_app": {"app_id": "app-x", "secret": "whatever"},
    }
    kwargs = cases.get(case, {})
    if case == "replayed_nonce":
        kwargs = {"nonce": "once"}
        assert (await client.post(invoice(), **kwargs))[0] == 201
    status, body = await client.post(invoice("26112000000000000009"), **kwargs)
    assert status == 401 and body["code"] == "UNAUTHORIZED" and body["message"]
    assert server.store.stored((SELLER, "26112000000000000009")) is None
    assert server.store.post_count((SELLER, "26112000000000000009")) == 0


async def test_the_signature_covers_the_query_string_as_sent(client: Client) -> None:
    path = f"/api/v1/invoices?seller_tax_id={SELLER}&page_size=5"
    assert (await client.call("GET", path))[0] == 200
    # Signed for one query, sent with another: refused.
    stamp, nonce = str(int(client.clock().timestamp() * 1000)), "n-1"
    headers = {
        "X-App-Id": "app-a",
        "X-Timestamp": stamp,
        "X-Nonce": nonce,
        "X-Signature": sign("secret-a", "GET", path, stamp, nonce, b""),
    }
    url = URL(client.base + path.replace("=5", "=6"), encoded=True)
    async with client.session.get(url, headers=headers) as response:
        assert response.status == 401


def test_nonces_are_forgotten_once_their_timestamp_leaves_the_window() -> None:
    auth = Authenticator({"a": "s"})
    now = 1_800_000_000.0
    for i in range(50):
        stamp = str(int(now * 1000))
        auth.verify(
            method="GET",
            path_qs="/x",
            body=b"",
            now=now,
            headers={
                "X-App-Id": "a",
                "X-Timestamp": stamp,
                "X-Nonce": f"n{i}",
                "X-Signature": sign("s", "GET", "/x", stamp, f"n{i}", b""),
            },
        )
    assert auth.remembered() == 50
    stamp = str(int((now + 301) * 1000))
    auth.verify(
        method="GET",
        path_qs="/x",
        body=b"",
        now=now + 301,
        headers={
            "X-App-Id": "a",
            "X-Timestamp": stamp,
            "X-Nonce": "late",
            "X-Signature": sign("s", "GET", "/x", stamp, "late", b""),
        },
    )
    assert auth.remembered() == 1


async def test_quota_per_app_id_is_429_with_retry_after(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    server.faults.update(quota_per_second=2)
    path = "/api/v1/receipts/none"
    assert [(await client.call("GET", path))[0] for _ in range(2)] == [404, 404]
    status, body, headers = await client.call("GET", path)
    assert (status, body) == (429, {"code": "RATE_LIMITED"})
    assert int(headers["Retry-After"]) >= 1
    assert (await client.call("GET", path, app_id="app-b"))[0] == 404  # its own quota
    clock.advance(1.01)
    assert (await client.call("GET", path))[0] == 404


async def test_maintenance_is_503_on_the_api_and_on_health(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    server.faults.update(maintenance=True, maintenance_retry_after=30)
    status, body, headers = await client.call("GET", "/api/v1/health")
    assert (status, body, headers["Retry-After"]) == (503, {"code": "MAINTENANCE"}, "30")
    status, body = await client.post(invoice())
    assert (status, body) == (503, {"code": "MAINTENANCE"})
    assert server.store.stored_count() == 0 and sum(server.store.post_counts().values()) == 1

    window = MaintenanceWindow(clock.now - timedelta(minutes=1), clock.now + timedelta(seconds=90))
    server.faults.update(maintenance=False, maintenance_windows=[window])
    status, _, headers = await client.call("GET", "/api/v1/health")
    assert (status, headers["Retry-After"]) == (503, "90")
    clock.advance(90)
    assert (await client.call("GET", "/api/v1/health"))[:2] == (200, {"status": "ok"})
    assert (await client.post(invoice()))[0] == 201


async def test_a_202_receipt_stays_processing_until_its_time_then_settles(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    server.faults.update(accept_async_fraction=1.0, receipt_processing_seconds=5.0)
    status, body = await client.post(invoice())
    assert (status, body["status"]) == (202, "PROCESSING")
    receipt = f"/api/v1/receipts/{body['receipt_id']}"
    assert (await client.call("GET", receipt))[:2] == (200, {"status": "PROCESSING"})
    assert await client.post(invoice()) == (202, body)  # same receipt while processing
    assert server.store.stored((SELLER, "26112000000000012345")) is None

    clock.advance(5)
    status, settled, _ = await client.call("GET", receipt)
    assert (status, settled["status"]) == (200, "ACCEPTED")
    stored = server.store.stored((SELLER, "26112000000000012345"))
    assert stored is not None and settled["platform_ref"] == stored.platform_ref
    assert (await client.post(invoice()))[0] == 409
    assert server.store.post_count((SELLER, "26112000000000012345")) == 3


async def test_a_receipt_can_stay_processing_for_ever_and_settle_as_rejected(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    server.faults.update(accept_async_fraction=1.0, receipt_processing_seconds=None)
    _, forever = await client.post(invoice())
    server.faults.update(receipt_processing_seconds=0.5)
    _, rejected = await client.post(invoice("2611200000000000BAD", total_with_tax="1.00"))
    clock.advance(86_400)
    assert (await client.call("GET", f"/api/v1/receipts/{forever['receipt_id']}"))[1] == {
        "status": "PROCESSING"
    }
    _, body, _ = await client.call("GET", f"/api/v1/receipts/{rejected['receipt_id']}")
    assert (body["status"], body["code"], body["field"]) == (
        "REJECTED",
        "AMOUNT_MISMATCH",
        "total_with_tax",
    )
    assert (await client.call("GET", "/api/v1/receipts/unknown"))[:2] == (
        404,
        {"code": "NOT_FOUND"},
    )


@pytest.mark.parametrize("mode", ["hang", "drop"])
async def test_in_doubt_stores_the_invoice_but_never_answers(
    server: SandboxServer, client: Client, mode: str
) -> None:
    server.faults.update(in_doubt_fraction=1.0, in_doubt_mode=mode, in_doubt_hang_seconds=30)
    with pytest.raises((TimeoutError, aiohttp.ClientError)):
        await client.post(invoice(), timeout=0.3)
    assert server.store.stored((SELLER, "26112000000000012345")) is not None
    server.faults.update(in_doubt_fraction=0.0)
    assert (await client.post(invoice()))[0] == 409  # how a client resolves the doubt


async def test_server_error_faults_store_nothing(server: SandboxServer, client: Client) -> None:
    server.faults.update(server_error_fraction=1.0)
    statuses = {(await client.post(invoice()))[0] for _ in range(12)}
    assert statuses <= {500, 502, 504} and len(statuses) > 1
    assert server.store.stored_count() == 0
    assert server.store.post_count((SELLER, "26112000000000012345")) == 12


async def test_latency_delays_answers(server: SandboxServer, client: Client) -> None:
    server.faults.update(latency_ms=40)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.call("GET", "/api/v1/health")
    assert loop.time() - started >= 0.04


async def test_listing_pages_stably_over_more_than_1000_invoices(
    server: SandboxServer, client: Client
) -> None:
    first = date(2026, 11, 1)
    for i in range(1205):
        day = (first + timedelta(days=i % 20)).isoformat()
        server.store.submit(
            invoice(f"2611200000{i:010d}", issue_date=day),
            asynchronous=False,
            processing_seconds=None,
        )
    other = make_tax_id("91440300MA5D00000")
    server.store.submit(
        invoice("26440000000000000001", seller={"tax_id": other, "name": "x"}),
        asynchronous=False,
        processing_seconds=None,
    )
    query = f"/api/v1/invoices?seller_tax_id={SELLER}&from=2026-11-01&to=2026-11-30"
    status, body, _ = await client.call("GET", query)
    assert (status, len(body["items"])) == (200, 100)

    seen: list[tuple[str, str]] = []
    token = None
    pages = 0
    while True:
        path = query + "&page_size=5000" + (f"&page_token={token}" if token else "")
        _, body, _ = await client.call("GET", path)
        assert len(body["items"]) <= 1000
        seen += [(item["issue_date"], item["invoice_number"]) for item in body["items"]]
        pages += 1
        token = body["next_page_token"]
        if token is None:
            break
    assert pages == 2 and len(seen) == len(set(seen)) == 1205
    assert seen == sorted(seen)
    item = body["items"][0]
    assert (
        set(item)
        == {"invoice_number", "platform_ref", "accepted_at", "total_with_tax", "issue_date"}
        and item["total_with_tax"] == "1060.00"
    )

    _, body, _ = await client.call(
        "GET",
        f"/api/v1/invoices?seller_tax_id={SELLER}&from=2026-11-05&to=2026-11-05&page_size=1000",
    )
    assert {i["issue_date"] for i in body["items"]} == {"2026-11-05"} and len(body["items"]) == 61
    bad = await client.call("GET", f"/api/v1/invoices?seller_tax_id={SELLER}&page_token=%21%21")
    assert bad[0] == 400


async def test_admin_endpoints_change_faults_report_and_reset(
    server: SandboxServer, client: Client
) -> None:
    await client.post(invoice())
    async with client.session.patch(
        server.url + "/_sandbox/faults", json={"latency_ms": 1, "server_error_fraction": 0.5}
    ) as r:
        assert r.status == 200 and (await r.json())["server_error_fraction"] == 0.5
    assert server.faults.server_error_fraction == 0.5
    async with client.session.patch(
        server.url + "/_sandbox/faults", json={"latency_ms": 2, "no_such_fault": 1}
    ) as r:
        assert r.status == 400 and "no_such_fault" in (await r.json())["message"]
    assert server.faults.latency_ms == 1  # nothing of a refused change applied
    async with client.session.get(server.url + "/_sandbox/stats") as r:
        stats = await r.json()
    assert (stats["stored"], stats["posts"]) == (1, 1)
    async with client.session.get(server.url + "/_sandbox/invoices") as r:
        assert [i["invoice_number"] for i in (await r.json())["items"]] == ["26112000000000012345"]
    async with client.session.post(server.url + "/_sandbox/reset") as r:
        assert r.status == 200
    assert server.store.stored_count() == 0 and server.store.post_counts() == {}


async def test_admin_endpoints_are_404_unless_enabled() -> None:
    async with SandboxServer() as plain, aiohttp.ClientSession() as session:
        for method, path in [
            ("GET", "faults"),
            ("PATCH", "faults"),
            ("GET", "stats"),
            ("GET", "invoices"),
            ("POST", "reset"),
        ]:
            async with session.request(method, f"{plain.url}/_sandbox/{path}", json={}) as r:
                assert r.status == 404, path
        async with session.get(f"{plain.url}/api/v1/health") as r:
            assert r.status == 200


async def test_server_binds_a_real_port_and_stops_twice_safely() -> None:
    server = SandboxServer(port=0)
    with pytest.raises(RuntimeError):
        _ = server.url
    await server.start()
    await server.start()
    assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
    await server.stop()
    await server.stop()


async def test_a_stopped_sandbox_lets_go_of_what_it_stored_and_can_start_again(
    clock: FakeClock,
) -> None:
    server = SandboxServer(apps=APPS, clock=clock)
    async with aiohttp.ClientSession() as session:
        await server.start()
        assert (await Client(session, server, clock).post(invoice()))[0] == 201
        await server.stop()
        # Started again, the same server still holds what it stored.
        await server.start()
        status, _ = await Client(session, server, clock).post(invoice())
        assert status == 409
        await server.stop()
    store = weakref.ref(server.store)
    del server
    gc.collect()
    # aiohttp's cache of built handlers keeps stopped applications reachable; what a
    # sandbox stored must not be (a bench's 100k backlog kept 1.2 GB alive).
    assert store() is None


def test_faults_update_validates_names_and_values_and_changes_nothing_on_error() -> None:
    faults = Faults(seed=1)
    with pytest.raises(ValueError, match="no_such"):
        faults.update(no_such=1)
    with pytest.raises(ValueError, match="server_error_fraction"):
        faults.update(latency_ms=5, server_error_fraction=1.5)
    assert faults.latency_ms == 0
    faults.update(maintenance_windows=["2026-11-20T02:00:00+08:00/2026-11-20T02:30:00+08:00"])
    assert faults.maintenance_windows[0].end - faults.maintenance_windows[0].start == timedelta(
        minutes=30
    )
    demo = Faults.profile("demo", seed=3)
    assert 0 < demo.server_error_fraction < 0.1 and demo.accept_async_fraction > 0
    twin = Faults.profile("demo", seed=3)
    assert [twin.server_error() for _ in range(200)] == [demo.server_error() for _ in range(200)]


def test_cli_refuses_bad_fault_values() -> None:
    from streams.cli.sandbox_cmd import sandbox

    result = CliRunner().invoke(
        sandbox, ["--server-error-fraction", "2", "--app-id", "a", "--app-secret", "s"]
    )
    assert result.exit_code == 2 and "server_error_fraction" in result.output


async def test_stored_invoices_are_copies_in_a_snapshot(server: SandboxServer) -> None:
    server.store.submit(copy.deepcopy(invoice()), asynchronous=False, processing_seconds=None)
    snap = server.store.snapshot()
    snap.stored[(SELLER, "26112000000000012345")].invoice["remarks"] = "changed"  # type: ignore[index]
    stored = server.store.stored((SELLER, "26112000000000012345"))
    assert stored is not None and stored.invoice["remarks"] is None
