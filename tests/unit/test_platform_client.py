"""PlatformClient against stub servers on loopback that follow only the written contract.

Every stub recomputes the signature from the request exactly as received and
answers 401 when it does not match, so each test also proves the signing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiohttp import web

from streams.errors import (
    ConfigurationError,
    PlatformAuthError,
    PlatformConnectError,
    PlatformError,
    PlatformInDoubtError,
    PlatformMaintenanceError,
    PlatformProtocolError,
    PlatformRateLimitedError,
    PlatformRejectedError,
    PlatformServerError,
)
from streams.platform.client import PlatformClient
from streams.platform.results import Accepted, ListedInvoice, Processing, StoredInvoice
from streams.platform.signing import sign, signatures_match
from streams.settings import Settings

APP_ID, SECRET = "stub-app", "stub-secret-DO-NOT-LEAK"
TIMEOUT = 0.2
KEY = "91110108MA01XXXXXB:26112000000000012345"
INVOICE: dict[str, Any] = {
    "invoice_number": "26112000000000012345",
    "kind": "blue",
    "invoice_type": "general",
    "issue_date": "2026-11-20",
    "seller": {"tax_id": "91110108MA01XXXXXB", "name": "北京某某科技有限公司"},
    "buyer": {"tax_id": None, "name": "张三", "natural_person": True},
    "lines": [
        {"line_no": 1, "item_name": "*信息技术服务*软件维护", "tax_code": "3040201000000000000",
         "quantity": "1", "unit": "次", "unit_price": "1000.00",
         "amount": "1000.00", "tax_rate": "0.06", "tax_amount": "60.00"},
    ],
    "total_amount": "1000.00",
    "total_tax": "60.00",
    "total_with_tax": "1060.00",
    "currency": "CNY",
    "original_invoice_number": None,
    "remarks": None,
}  # fmt: skip
ACCEPTED = {"status": "ACCEPTED", "platform_ref": "P-1", "accepted_at": "2026-11-20T09:18:00+08:00"}
CST = timezone(timedelta(hours=8))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    method: str
    path_qs: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Stub:
    client: PlatformClient
    url: str
    seen: list[Received] = field(default_factory=list)


@asynccontextmanager
async def platform(
    handler: Handler,
    *,
    prefix: str = "",
    secret: str = SECRET,
    release: asyncio.Event | None = None,
    max_connections: int = 4,
) -> AsyncIterator[Stub]:
    """A contract server at ``prefix`` whose answers come from ``handler``."""
    seen: list[Received] = []

    async def entry(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append(Received(request.method, request.raw_path, body, dict(request.headers)))
        if not request.path.startswith(f"{prefix}/api/v1/"):
            return web.json_response({"code": "NOT_FOUND"}, status=404)
        if request.path != f"{prefix}/api/v1/health":
            h = request.headers
            expected = sign(
                SECRET, request.method, request.raw_path,
                h.get("X-Timestamp", ""), h.get("X-Nonce", ""), body,
            )  # fmt: skip
            if h.get("X-App-Id") != APP_ID or not signatures_match(
                expected, h.get("X-Signature", "")
            ):
                return web.json_response(
                    {"code": "UNAUTHORIZED", "message": "signature mismatch"}, status=401
                )
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", entry)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}{prefix}"
        async with PlatformClient(
            url, APP_ID, secret, timeout=TIMEOUT, max_connections=max_connections
        ) as client:
            yield Stub(client, url, seen)
    finally:
        if release is not None:
            release.set()  # let hanging handlers finish, or cleanup would wait for them
        await runner.cleanup()


def answer(status: int, body: object = None, *, headers: dict[str, str] | None = None) -> Handler:
    """A handler giving one fixed answer; ``bytes`` bodies are sent as they are."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, headers=headers, content_type="text/html")
        return web.json_response(body, status=status, headers=headers)

    return handle


@asynccontextmanager
async def raw_server(reply: bytes | None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that reads one whole request, then writes ``reply`` and hangs up."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        requests.append(head + body)
        if reply is not None:
            writer.write(reply)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", requests
    finally:
        server.close()
        await server.wait_closed()


def assert_no_secret(exc: BaseException) -> None:
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)


# --- POST /api/v1/invoices: the status table -------------------------------------------


async def test_201_is_accepted_with_an_aware_time() -> None:
    async with platform(answer(201, ACCEPTED)) as stub:
        result = await stub.client.submit(INVOICE)
    assert result == Accepted("P-1", datetime(2026, 11, 20, 9, 18, tzinfo=CST))
    assert result.accepted_at.utcoffset() == timedelta(hours=8)
    [request] = stub.seen
    assert (request.method, request.path_qs) == ("POST", "/api/v1/invoices")
    assert request.headers["Content-Type"] == "application/json"
    assert orjson.loads(request.body) == INVOICE


async def test_202_is_processing() -> None:
    async with platform(answer(202, {"status": "PROCESSING", "receipt_id": "R-1"})) as stub:
        assert await stub.client.submit(INVOICE) == Processing("R-1")


async def test_raw_body_is_sent_byte_for_byte() -> None:
    body = b'{ "invoice_number" : "26112000000000012345",\n "remarks": "\xe5\xa4\x87\xe6\xb3\xa8" }'
    async with platform(answer(201, {**ACCEPTED, "accepted_at": "2026-11-20T01:18:00Z"})) as stub:
        result = await stub.client.submit(INVOICE, body)
    assert stub.seen[0].body == body
    assert isinstance(result, Accepted)
    assert result.accepted_at == datetime(2026, 11, 20, 1, 18, tzinfo=UTC)


async def test_a_body_sent_with_its_digest_is_signed_as_that_body() -> None:
    # The stub recomputes the signature from the bytes it received: a digest that did
    # not name the body would be answered 401.
    body = b'{"invoice_number":"26112000000000012345"}'
    async with platform(answer(201, ACCEPTED)) as stub:
        result = await stub.client.submit(
            INVOICE, body, body_sha256=hashlib.sha256(body).hexdigest()
        )
        with pytest.raises(PlatformAuthError):
            await stub.client.submit(INVOICE, body, body_sha256=hashlib.sha256(b"{}").hexdigest())
    assert isinstance(result, Accepted)
    assert stub.seen[0].body == body


def echo(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "code": "ALREADY_EXISTS", "platform_ref": "P-9", "accepted_at": "2026-11-19T10:00:00+08:00",
        "total_with_tax": "1060.0", "issue_date": "2026-11-20", "buyer_tax_id": None,
    }  # fmt: skip
    return base | changes


async def test_409_with_a_matching_echo_is_accepted() -> None:
    # "1060.0" against "1060.00": compared as money, not as text.
    async with platform(answer(409, echo())) as stub:
        result = await stub.client.submit(INVOICE)
    assert result == Accepted("P-9", datetime(2026, 11, 19, 10, tzinfo=CST))


@pytest.mark.parametrize(
    ("changes", "field_path"),
    [
        ({"total_with_tax": "1060.01"}, "total_with_tax"),
        ({"issue_date": "2026-11-21"}, "issue_date"),
        ({"buyer_tax_id": "91310000MA1FL0XX0X"}, "buyer.tax_id"),
    ],
)
async def test_409_with_a_different_echo_is_a_duplicate_conflict(
    changes: dict[str, object], field_path: str
) -> None:
    async with platform(answer(409, echo(**changes))) as stub:
        with pytest.raises(PlatformRejectedError) as caught:
            await stub.client.submit(INVOICE)
    error = caught.value
    assert (error.code, error.status, error.field) == ("DUPLICATE_CONFLICT", 409, field_path)
    assert error.invoice_key == KEY
    assert not error.retryable


async def test_422_is_rejected_with_the_platform_code_and_field() -> None:
    body = {"code": "AMOUNT_MISMATCH", "message": "tax amount off", "field": "lines[0].tax_amount"}
    async with platform(answer(422, body)) as stub:
        with pytest.raises(PlatformRejectedError) as caught:
            await stub.client.submit(INVOICE)
    error = caught.value
    assert (error.code, error.field, error.status) == (
        "AMOUNT_MISMATCH",
        "lines[0].tax_amount",
        422,
    )
    assert (error.invoice_key, error.message) == (KEY, "tax amount off")
    assert not error.retryable


async def test_429_carries_retry_after() -> None:
    handler = answer(429, {"code": "RATE_LIMITED"}, headers={"Retry-After": "3"})
    async with platform(handler) as stub:
        with pytest.raises(PlatformRateLimitedError) as caught:
            await stub.client.submit(INVOICE)
    error = caught.value
    assert (error.retry_after, error.status, error.platform_code) == (3.0, 429, "RATE_LIMITED")
    assert error.retryable
    assert error.invoice_key == KEY


@pytest.mark.parametrize(("headers", "retry_after"), [({"Retry-After": "120"}, 120.0), ({}, None)])
async def test_503_is_maintenance_with_optional_retry_after(
    headers: dict[str, str], retry_after: float | None
) -> None:
    async with platform(answer(503, {"code": "MAINTENANCE"}, headers=headers)) as stub:
        with pytest.raises(PlatformMaintenanceError) as caught:
            await stub.client.submit(INVOICE)
    assert (caught.value.retry_after, caught.value.status) == (retry_after, 503)
    assert caught.value.retryable


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"", {"code": "INTERNAL"}])
async def test_5xx_with_any_body_is_a_server_error(status: int, body: object) -> None:
    async with platform(answer(status, body)) as stub:
        with pytest.raises(PlatformServerError) as caught:
            await stub.client.submit(INVOICE)
    assert caught.value.status == status
    assert caught.value.retryable
    assert caught.value.invoice_key == KEY


async def test_401_when_the_server_rejects_our_signature() -> None:
    async with platform(answer(201, ACCEPTED), secret="wrong-secret") as stub:
        with pytest.raises(PlatformAuthError) as caught:
            await stub.client.submit(INVOICE)
    assert (caught.value.status, caught.value.platform_code) == (401, "UNAUTHORIZED")
    assert "signature mismatch" in caught.value.message
    assert not caught.value.retryable


async def test_timeout_after_the_request_was_sent_is_in_doubt() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response(ACCEPTED, status=201)

    async with platform(hang, release=release) as stub:
        with pytest.raises(PlatformInDoubtError) as caught:
            await stub.client.submit(INVOICE)
    assert len(stub.seen) == 1  # the platform did receive it
    assert caught.value.retryable
    assert caught.value.invoice_key == KEY


@pytest.mark.parametrize("reply", [None, b"NOT HTTP AT ALL\r\n\r\n"], ids=["hang-up", "garbled"])
async def test_connection_lost_after_sending_is_in_doubt(reply: bytes | None) -> None:
    async with (
        raw_server(reply) as (url, requests),
        PlatformClient(url, APP_ID, SECRET, timeout=TIMEOUT) as client,
    ):
        with pytest.raises(PlatformInDoubtError):
            await client.submit(INVOICE)
    assert len(requests) == 1


async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: the kernel refuses
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        async with PlatformClient(url, APP_ID, SECRET, timeout=TIMEOUT) as client:
            with pytest.raises(PlatformConnectError) as caught:
                await client.submit(INVOICE)
            assert not await client.health()
    assert caught.value.retryable
    assert caught.value.invoice_key == KEY
    assert_no_secret(caught.value)


@pytest.mark.parametrize(
    "handler",
    [
        answer(200, ACCEPTED),
        answer(400, {"code": "BAD_REQUEST"}),
        answer(201, {**ACCEPTED, "accepted_at": "2026-11-20T09:18:00"}),  # no offset
        answer(201, b"stored"),
        answer(202, {"status": "PROCESSING"}),  # no receipt id
        answer(409, echo(total_with_tax=1060.0)),  # money as a float
        answer(422, {"message": "no code"}),
    ],
    ids=["200", "400", "naive-time", "not-json", "no-receipt", "float-money", "422-no-code"],
)
async def test_answers_outside_the_contract_are_protocol_errors(handler: Handler) -> None:
    async with platform(handler) as stub:
        with pytest.raises(PlatformProtocolError) as caught:
            await stub.client.submit(INVOICE)
    assert caught.value.invoice_key == KEY
    assert not caught.value.retryable


# --- receipts, lookups, listing, health ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": "PROCESSING"}, Processing("R 1/2")),
        (ACCEPTED, Accepted("P-1", datetime(2026, 11, 20, 9, 18, tzinfo=CST))),
    ],
)
async def test_receipt_states(body: object, expected: object) -> None:
    async with platform(answer(200, body)) as stub:
        assert await stub.client.receipt("R 1/2") == expected
    assert stub.seen[0].path_qs == "/api/v1/receipts/R%201%2F2"


async def test_rejected_receipt_raises_with_code_and_field() -> None:
    body = {
        "status": "REJECTED",
        "code": "INVALID_TAX_ID",
        "message": "bad",
        "field": "buyer.tax_id",
    }
    async with platform(answer(200, body)) as stub:
        with pytest.raises(PlatformRejectedError) as caught:
            await stub.client.receipt("R-1")
    assert (caught.value.code, caught.value.field) == ("INVALID_TAX_ID", "buyer.tax_id")


async def test_unknown_receipt_is_a_protocol_error() -> None:
    async with platform(answer(404, {"code": "NOT_FOUND"})) as stub:
        with pytest.raises(PlatformProtocolError, match="does not know receipt 'R-404'"):
            await stub.client.receipt("R-404")


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (answer(500, b"oops"), PlatformServerError),
        (
            answer(429, {"code": "RATE_LIMITED"}, headers={"Retry-After": "1"}),
            PlatformRateLimitedError,
        ),
        (answer(200, {"status": "LOST"}), PlatformProtocolError),
    ],
)
async def test_receipt_shares_the_error_mapping(handler: Handler, error: type[Exception]) -> None:
    async with platform(handler) as stub:
        with pytest.raises(error):
            await stub.client.receipt("R-1")


async def test_get_invoice_found() -> None:
    body = {**ACCEPTED, "invoice": INVOICE}
    async with platform(answer(200, body)) as stub:
        stored = await stub.client.get_invoice("91110108MA01XXXXXB", "26112000000000012345")
    assert stored == StoredInvoice("P-1", datetime(2026, 11, 20, 9, 18, tzinfo=CST), INVOICE)
    assert stub.seen[0].method == "GET"
    assert stub.seen[0].path_qs == "/api/v1/invoices/91110108MA01XXXXXB/26112000000000012345"
    assert stub.seen[0].body == b""


async def test_get_invoice_not_found_is_none() -> None:
    async with platform(answer(404, {"code": "NOT_FOUND"})) as stub:
        assert await stub.client.get_invoice("91110108MA01XXXXXB", "1") is None


async def test_a_404_that_is_not_the_contracts_is_not_taken_for_absence() -> None:
    async with platform(answer(404, b"<h1>nginx</h1>")) as stub:
        with pytest.raises(PlatformProtocolError) as caught:
            await stub.client.get_invoice("91110108MA01XXXXXB", "1")
    assert caught.value.invoice_key == "91110108MA01XXXXXB:1"


def listed(number: int) -> dict[str, str]:
    return {
        "invoice_number": f"{number:020d}", "platform_ref": f"P-{number}",
        "accepted_at": "2026-11-20T09:18:00+08:00", "total_with_tax": f"{number}.50",
        "issue_date": "2026-11-20",
    }  # fmt: skip


async def test_list_invoices_follows_page_tokens() -> None:
    pages = {None: ([1, 2], "t2"), "t2": ([3], "t3"), "t3": ([], None)}

    async def handle(request: web.Request) -> web.StreamResponse:
        numbers, token = pages[request.query.get("page_token")]
        return web.json_response({"items": [listed(n) for n in numbers], "next_page_token": token})

    async with platform(handle) as stub:
        got = [
            item
            async for item in stub.client.list_invoices(
                "91110108MA01XXXXXB", date(2026, 11, 1), date(2026, 11, 30), page_size=2
            )
        ]
    assert [i.invoice_number for i in got] == [f"{n:020d}" for n in (1, 2, 3)]
    assert got[0] == ListedInvoice(
        "00000000000000000001", "P-1", datetime(2026, 11, 20, 9, 18, tzinfo=CST),
        Decimal("1.50"), date(2026, 11, 20),
    )  # fmt: skip
    query = "/api/v1/invoices?seller_tax_id=91110108MA01XXXXXB&from=2026-11-01&to=2026-11-30"
    assert [r.path_qs for r in stub.seen] == [
        f"{query}&page_size=2",
        f"{query}&page_size=2&page_token=t2",
        f"{query}&page_size=2&page_token=t3",
    ]


async def test_list_invoices_stops_on_a_repeated_token() -> None:
    handler = answer(200, {"items": [listed(1)], "next_page_token": "same"})
    async with platform(handler) as stub:
        with pytest.raises(PlatformProtocolError, match="repeats"):
            async for _ in stub.client.list_invoices("S", date(2026, 1, 1), date(2026, 1, 2)):
                pass
    assert len(stub.seen) == 2


@pytest.mark.parametrize(
    ("handler", "healthy"),
    [
        (answer(200, {"status": "ok"}), True),
        (answer(503, {"code": "MAINTENANCE"}), False),
        (answer(200, b"fine"), False),
    ],
)
async def test_health(handler: Handler, healthy: bool) -> None:
    async with platform(handler) as stub:
        assert await stub.client.health() is healthy
    [request] = stub.seen
    assert (request.method, request.path_qs) == ("GET", "/api/v1/health")
    assert "X-Signature" not in request.headers  # unauthenticated, spends no nonce


# --- signing, configuration, lifecycle -------------------------------------------------


async def test_a_server_recomputing_the_signature_accepts_prefix_query_and_quoting() -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.json_response(ACCEPTED, status=201)
        if "/invoices/" in request.path:
            return web.json_response({**ACCEPTED, "invoice": INVOICE})
        return web.json_response({"items": [], "next_page_token": None})

    async with platform(handle, prefix="/gw/tax-platform") as stub:
        await stub.client.submit(INVOICE)
        await stub.client.get_invoice("9111 0108/MA", "No.1+2")
        async for _ in stub.client.list_invoices(
            "9111 0108/MA&x=1", date(2026, 1, 1), date(2026, 1, 31)
        ):
            pass
    assert [r.path_qs for r in stub.seen] == [
        "/gw/tax-platform/api/v1/invoices",
        "/gw/tax-platform/api/v1/invoices/9111%200108%2FMA/No.1%2B2",
        "/gw/tax-platform/api/v1/invoices?seller_tax_id=9111%200108%2FMA%26x%3D1"
        "&from=2026-01-01&to=2026-01-31&page_size=1000",
    ]
    nonces = {r.headers["X-Nonce"] for r in stub.seen}
    assert len(nonces) == 3
    now_ms = datetime.now(UTC).timestamp() * 1000
    assert all(abs(int(r.headers["X-Timestamp"]) - now_ms) < 60_000 for r in stub.seen)
    assert all(r.headers["X-App-Id"] == APP_ID for r in stub.seen)


async def test_from_settings_uses_url_prefix_and_credentials() -> None:
    async with platform(answer(201, ACCEPTED), prefix="/p") as stub:
        settings = Settings(
            platform_url=stub.url + "/", platform_app_id=APP_ID, platform_app_secret=SECRET,
            platform_timeout=TIMEOUT,
        )  # fmt: skip
        async with PlatformClient.from_settings(settings) as client:
            assert await client.submit(INVOICE) == Accepted(
                "P-1", datetime(2026, 11, 20, 9, 18, tzinfo=CST)
            )
    assert stub.seen[0].path_qs == "/p/api/v1/invoices"


async def test_lifecycle_is_idempotent_and_secret_stays_out_of_sight() -> None:
    client = PlatformClient("http://user:pw@127.0.0.1:9/prefix", APP_ID, SECRET)
    with pytest.raises(RuntimeError, match="start"):
        await client.submit(INVOICE)
    await client.start()
    await client.start()
    await client.close()
    await client.close()
    assert SECRET not in repr(client)
    assert "pw" not in repr(client)
    assert repr(client) == "PlatformClient(base_url='http://127.0.0.1:9/prefix', app_id='stub-app')"


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:8080", "http://host/?q=1"])
def test_bad_base_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PlatformClient(url, APP_ID, SECRET)


async def test_error_messages_never_carry_the_secret() -> None:
    errors: list[PlatformError] = []
    for handler in (
        answer(401, {"code": "UNAUTHORIZED", "message": "no"}),
        answer(422, {"code": "INVALID_FIELD", "message": "x", "field": None}),
        answer(500, b"boom"),
        answer(409, echo(total_with_tax="1.00")),
    ):
        async with platform(handler) as stub:
            with pytest.raises(PlatformError) as caught:
                await stub.client.submit(INVOICE)
            errors.append(caught.value)
    for error in errors:
        assert_no_secret(error)
