"""The sandbox's aiohttp application: the platform contract, faults, and admin endpoints.

Every ``/api/v1`` request but health passes one gate, in this order: latency,
authentication (401), POST counting, maintenance (503), quota (429), server
errors (5xx). A POST is counted once it is authenticated, whatever it is answered,
because the point of the count is what delivering an invoice cost the client.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date

import orjson
from aiohttp import web

from streams.sandbox.auth import Authenticator, AuthError
from streams.sandbox.faults import Faults, QuotaMeter
from streams.sandbox.store import (
    Accepted,
    AlreadyExists,
    Outcome,
    Processing,
    Rejected,
    SandboxStore,
    StoredInvoice,
    invoice_key,
)

__all__ = ["MAX_PAGE_SIZE", "SandboxState", "build_app"]

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000
_API, _HEALTH, _UPLOAD = "/api/v1/", "/api/v1/health", "/api/v1/invoices"
_INVOICE = web.RequestKey("sandbox_invoice", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SandboxState:
    store: SandboxStore
    faults: Faults
    auth: Authenticator
    #: set when the server stops, to release requests held open by the in-doubt fault
    stopping: asyncio.Event
    quota: QuotaMeter = field(default_factory=QuotaMeter)


@dataclass
class StateSlot:
    """The application's way to its state, emptied when the server stops.

    aiohttp keeps every application that has middlewares reachable from a module-level
    cache of built handlers (an ``lru_cache`` of 1,024 entries), so a stopped sandbox,
    with every invoice it ever stored, lived on until the process ended: 1.2 GB in the
    bench after a 100k backlog. Only the empty slot stays behind now."""

    state: SandboxState | None


SLOT = web.AppKey("sandbox_state", StateSlot)


def _state(request: web.Request) -> SandboxState:
    state = request.app[SLOT].state
    if state is None:  # a request that outlived the server's stop
        raise web.HTTPServiceUnavailable(text="the sandbox is stopped")
    return state


def _json(status: int, body: object, *, retry_after: float | None = None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _bad_query(field_name: str, message: str) -> web.Response:
    return _json(400, {"code": "INVALID_FIELD", "message": message, "field": field_name})


def _server_error(status: int) -> web.Response:
    # Deliberately not all JSON: a client must cope with what a gateway really sends.
    if status == 502:
        return web.Response(
            status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
        )
    if status == 504:
        return web.Response(status=504, text="upstream timed out", content_type="text/plain")
    return _json(status, {"code": "INTERNAL_ERROR", "message": "sandbox server error fault"})


@web.middleware
async def api_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(_API):
        return await handler(request)
    state = _state(request)
    faults = state.faults
    delay = faults.latency_seconds()
    if delay > 0:
        await asyncio.sleep(delay)
    if request.path == _HEALTH:
        return await handler(request)
    body = await request.read()
    now = state.store.clock()
    try:
        app_id = state.auth.verify(
            method=request.method,
            path_qs=request.raw_path,
            headers=request.headers,
            body=body,
            now=now.timestamp(),
        )
    except AuthError as exc:
        return _json(401, {"code": "UNAUTHORIZED", "message": str(exc)})
    if request.method == "POST" and request.path == _UPLOAD:
        try:
            invoice = orjson.loads(body)
        except orjson.JSONDecodeError:
            invoice = None
        request[_INVOICE] = invoice
        key = invoice_key(invoice)
        if key is not None:
            state.store.count_post(key)
    down, retry_after = faults.down_for_maintenance(now)
    if down:
        return _json(503, {"code": "MAINTENANCE"}, retry_after=retry_after)
    wait = state.quota.admit(app_id, now.timestamp(), faults.quota_per_second)
    if wait is not None:
        return _json(429, {"code": "RATE_LIMITED"}, retry_after=wait)
    status = faults.server_error()
    if status is not None:
        return _server_error(status)
    return await handler(request)


def _answer(outcome: Outcome) -> web.Response:
    match outcome:
        case Accepted(stored):
            return _json(201, stored.accepted_json())
        case Processing(receipt):
            return _json(202, {"status": "PROCESSING", "receipt_id": receipt.receipt_id})
        case AlreadyExists(stored):
            return _json(409, stored.echo_json())
        case Rejected(rejection):
            return _json(422, rejection.to_json())


async def post_invoice(request: web.Request) -> web.Response:
    state = _state(request)
    faults = state.faults
    withhold = faults.in_doubt()
    outcome = state.store.submit(
        request[_INVOICE],
        asynchronous=faults.answer_async(),
        processing_seconds=faults.receipt_processing_seconds,
    )
    if not withhold:
        return _answer(outcome)
    # In doubt: the outcome above stands (the invoice may be stored), the client never
    # learns it.
    if faults.in_doubt_mode == "hang":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.stopping.wait(), faults.in_doubt_hang_seconds)
    if request.transport is not None:
        request.transport.close()
    # Never sent: aiohttp finds the connection closed and drops this quietly.
    return web.Response(status=504)


async def get_receipt(request: web.Request) -> web.Response:
    receipt = _state(request).store.receipt(request.match_info["receipt_id"])
    if receipt is None:
        return _json(404, {"code": "NOT_FOUND"})
    return _json(200, receipt.to_json())


async def get_invoice(request: web.Request) -> web.Response:
    key = (request.match_info["seller"], request.match_info["number"])
    stored = _state(request).store.stored(key)
    if stored is None:
        return _json(404, {"code": "NOT_FOUND"})
    return _json(200, {**stored.accepted_json(), "invoice": stored.invoice})


def _position(stored: StoredInvoice) -> tuple[str, str]:
    return (stored.issue_date, stored.invoice_number)


def _token(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def _after(token: str) -> tuple[str, str] | None:
    try:
        position = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if (
        isinstance(position, list)
        and len(position) == 2
        and all(isinstance(p, str) for p in position)
    ):
        return (position[0], position[1])
    return None


async def list_invoices(request: web.Request) -> web.Response:
    query = request.query
    seller = query.get("seller_tax_id")
    if not seller:
        return _bad_query("seller_tax_id", "seller_tax_id is required.")
    bounds: list[date | None] = []
    for name in ("from", "to"):
        try:
            bounds.append(date.fromisoformat(query[name]) if query.get(name) else None)
        except ValueError:
            return _bad_query(name, f"{name} must be a date, YYYY-MM-DD.")
    try:
        size = min(max(int(query.get("page_size", DEFAULT_PAGE_SIZE)), 1), MAX_PAGE_SIZE)
    except ValueError:
        return _bad_query("page_size", "page_size must be a whole number.")
    found = _state(request).store.listing(seller, bounds[0], bounds[1])
    start = 0
    if query.get("page_token"):
        # Keyset paging: a page starts after the last item served, so invoices stored
        # meanwhile neither repeat nor shift an item out of the listing.
        after = _after(query["page_token"])
        if after is None:
            return _bad_query("page_token", "page_token is not one this platform issued.")
        start = bisect.bisect_right(found, after, key=_position)
    page = found[start : start + size]
    more = start + size < len(found)
    next_token = _token(_position(page[-1])) if more and page else None
    return _json(200, {"items": [s.item_json() for s in page], "next_page_token": next_token})


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    down, retry_after = state.faults.down_for_maintenance(state.store.clock())
    if down:
        return _json(503, {"code": "MAINTENANCE"}, retry_after=retry_after)
    return _json(200, {"status": "ok"})


# --- admin: only routed when enabled -------------------------------------------------


async def get_faults(request: web.Request) -> web.Response:
    return _json(200, _state(request).faults.to_json())


async def patch_faults(request: web.Request) -> web.Response:
    faults = _state(request).faults
    try:
        changes = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        changes = None
    message = "send a JSON object of fault settings"
    if isinstance(changes, dict):
        try:
            faults.update(**changes)
        except (TypeError, ValueError) as exc:
            message = str(exc)
        else:
            return _json(200, faults.to_json())
    return _json(400, {"code": "INVALID_FAULTS", "message": message})


async def get_stats(request: web.Request) -> web.Response:
    snapshot = _state(request).store.snapshot()
    stats = {
        "stored": len(snapshot.stored),
        "posts": sum(snapshot.post_counts.values()),
        "receipts": dict(Counter(r.status for r in snapshot.receipts.values())),
        "post_counts": snapshot.to_json()["post_counts"],
    }
    return _json(200, stats)


async def get_stored(request: web.Request) -> web.Response:
    return _json(200, {"items": _state(request).store.snapshot().to_json()["stored"]})


async def reset(request: web.Request) -> web.Response:
    # Faults stay as they are: a test resets data between cases, not its switches.
    state = _state(request)
    state.store.reset()
    state.quota.reset()
    return _json(200, {"status": "reset"})


def build_app(state: SandboxState, *, admin: bool) -> web.Application:
    """The application; the ``/_sandbox/`` routes exist only when ``admin`` is set."""
    app = web.Application(middlewares=[api_gate], client_max_size=16 * 1024 * 1024)
    app[SLOT] = StateSlot(state)
    app.router.add_post("/api/v1/invoices", post_invoice)
    app.router.add_get("/api/v1/invoices", list_invoices)
    app.router.add_get("/api/v1/invoices/{seller}/{number}", get_invoice)
    app.router.add_get("/api/v1/receipts/{receipt_id}", get_receipt)
    app.router.add_get("/api/v1/health", health)
    if admin:
        app.router.add_get("/_sandbox/faults", get_faults)
        app.router.add_patch("/_sandbox/faults", patch_faults)
        app.router.add_get("/_sandbox/stats", get_stats)
        app.router.add_get("/_sandbox/invoices", get_stored)
        app.router.add_post("/_sandbox/reset", reset)
    return app
