"""The worker's HTTP server (aiohttp): ``/healthz``, ``/readyz``, invoice lookups."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from streams.api.views import history_view, record_view
from streams.errors import LedgerUnavailableError
from streams.ledger.records import InvoiceKey
from streams.ledger.store import Ledger
from streams.processor.health import Health

log = logging.getLogger(__name__)

_LEDGER = web.AppKey("ledger", Ledger)
_HEALTH = web.AppKey("health", Health)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    health = request.app[_HEALTH]
    try:
        await request.app[_LEDGER].ping()
    except LedgerUnavailableError as exc:
        health.ledger_available = False
        health.last_problem = str(exc)
    body = health.as_dict()
    return _json(body, 200 if health.ready else 503)


async def _invoice(request: web.Request) -> web.Response:
    key = InvoiceKey(request.match_info["seller"], request.match_info["number"])
    ledger = request.app[_LEDGER]
    record = await ledger.get(key)
    if record is None:
        return _json({"code": "NOT_FOUND", "message": f"no invoice {key} in the ledger"}, 404)
    body = record_view(record)
    body["history"] = [history_view(h) for h in await ledger.history(key)]
    return _json(body)


def build_api(ledger: Ledger, health: Health) -> web.Application:
    app = web.Application()
    app[_LEDGER] = ledger
    app[_HEALTH] = health
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/invoices/{seller}/{number}", _invoice)
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
