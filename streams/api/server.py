"""The worker's HTTP server (aiohttp): ``/healthz``, ``/readyz``, invoice lookups, and the
operator and admin endpoints of ``streams.api.admin``.

Every answer, errors included, is JSON (``docs/openapi.yaml`` describes them all).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiokafka.errors import KafkaError

from streams.api import admin
from streams.api.keys import LEDGER, SETTINGS
from streams.api.listing import BadRequestError, parse_list_query
from streams.api.views import invoice_lookup, record_view
from streams.errors import InvoiceSyncError, LedgerUnavailableError, PlatformError
from streams.ledger.queries import invoice_page
from streams.ledger.records import InvoiceKey
from streams.ledger.store import Ledger
from streams.observability.metrics import Metrics
from streams.processor.health import Health
from streams.security.access import RouteRoles
from streams.security.audit import failure_reason
from streams.settings import Settings

log = logging.getLogger(__name__)

#: whether the worker's producer holds a live broker connection (for ``/readyz``)
BrokerCheck = Callable[[], Awaitable[bool]]

_HEALTH = web.AppKey("health", Health)
_METRICS = web.AppKey("metrics", Metrics)
_BROKER_CHECK: web.AppKey[BrokerCheck | None] = web.AppKey("broker_check")

#: who may call what, for ``streams.security.access.access_middleware``
ROUTE_ROLES: RouteRoles = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/invoices"): "viewer",
    ("GET", "/invoices/{seller}/{number}"): "viewer",
    ("POST", "/dlq/replay"): "operator",
    ("POST", "/reconcile/repair"): "operator",
    ("POST", "/sweep"): "operator",
    ("GET", "/tokens"): "admin",
    ("POST", "/tokens"): "admin",
    ("DELETE", "/tokens/{name}"): "admin",
}


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return _json(body, status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405 pages, and a ledger that is away, as JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "HTTP_ERROR")
        response = _error(exc.status, code, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except BadRequestError as exc:
        return _error(400, "BAD_REQUEST", exc.message, exc.field)
    except LedgerUnavailableError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _error(503, "LEDGER_UNAVAILABLE", "the ledger database is unavailable; retry")
    except PlatformError as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _error(502, "PLATFORM_FAILED", f"the tax platform failed: {exc.message}")
    except (InvoiceSyncError, KafkaError) as exc:
        # Messages of our errors and Kafka's name no secret (no URL, no credentials).
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _error(503, "UNAVAILABLE", failure_reason(exc))


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    health = request.app[_HEALTH]
    await health.refresh(request.app[LEDGER].ping, request.app[_BROKER_CHECK])
    return _json(health.as_dict(), 200 if health.ready else 503)


async def _invoice(request: web.Request) -> web.Response:
    key = InvoiceKey(request.match_info["seller"], request.match_info["number"])
    ledger = request.app[LEDGER]
    # PostgreSQL text cannot hold NUL, so no invoice is named with one.
    record = None if "\x00" in str(key) else await ledger.get(key)
    if record is None:
        return _error(404, "NOT_FOUND", f"no invoice {key} in the ledger")
    return _json(await invoice_lookup(ledger, request.app[SETTINGS], record))


async def _invoices(request: web.Request) -> web.Response:
    q = parse_list_query(request.query)
    page = await invoice_page(
        request.app[LEDGER], q.seller_tax_id, q.date_from, q.date_to,
        state=q.state, page_size=q.page_size, after=q.page_token,
    )  # fmt: skip
    return _json(
        {"items": [record_view(r) for r in page.records], "next_page_token": page.next_cursor}
    )


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[_METRICS].render()
    # Set as a header: aiohttp's content_type= refuses a value carrying a charset.
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_api(
    ledger: Ledger,
    health: Health,
    metrics: Metrics | None = None,
    *,
    settings: Settings | None = None,
    middlewares: Iterable[Middleware] = (),
    broker_check: BrokerCheck | None = None,
) -> web.Application:
    """``middlewares`` run inside the JSON error handling (e.g. the access check,
    ``access_middleware(tokens, ROUTE_ROLES)``). ``settings`` (default: from the
    environment) open the Kafka and platform clients of the mutating endpoints.
    ``broker_check`` is asked on every ``/readyz``; without it ``health.broker_connected``
    is whatever its owner set."""
    app = web.Application(middlewares=[json_errors, *middlewares])
    app[LEDGER] = ledger
    app[SETTINGS] = settings if settings is not None else Settings()
    app[_HEALTH] = health
    app[_BROKER_CHECK] = broker_check
    app[_METRICS] = metrics or Metrics()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/invoices", _invoices)
    app.router.add_get("/invoices/{seller}/{number}", _invoice)
    app.router.add_post("/dlq/replay", admin.replay_dlq)
    app.router.add_post("/reconcile/repair", admin.repair)
    app.router.add_post("/sweep", admin.sweep_now)
    app.router.add_get("/tokens", admin.list_tokens)
    app.router.add_post("/tokens", admin.new_token)
    app.router.add_delete("/tokens/{name}", admin.delete_token)
    return app


class ApiServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host = host
        self._port = port
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        # Port 0 asks the OS for a free port; the runner knows which one it got.
        self.port = int(self._runner.addresses[0][1])
        log.info("HTTP API listening on http://%s:%s", self._host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
