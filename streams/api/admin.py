"""The API's mutating endpoints: DLQ replay, reconcile repair, sweep (operator) and token
management (admin). Each calls the same function as its CLI command and is audited as
``token:<name>``; bodies are JSON objects, bad ones get a 400 naming the field."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import orjson
from aiohttp import web

from streams.api.keys import LEDGER, SETTINGS
from streams.api.listing import BadRequestError, parse_day
from streams.api.views import record_view
from streams.dlq.reader import DlqFilter, parse_position
from streams.dlq.replay import replay_and_audit, select_records
from streams.platform.client import PlatformClient
from streams.reconcile.run import reconcile_and_repair
from streams.reconcile.sweep import sweep
from streams.security.access import TOKEN
from streams.security.tokens import (
    ROLES,
    DuplicateTokenError,
    TokenStore,
    create_token,
    revoke_token,
)

#: token names show up in the audit trail and in `tokens list`: printable, bounded
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._@:-]{1,64}")


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def actor(request: web.Request) -> str:
    token = request.get(TOKEN)
    return f"token:{token.name}" if token is not None else "token:-"


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequestError("body", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequestError("body", "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise BadRequestError(name, f"{name} must be a non-empty string")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequestError(name, f"{name} must be true or false")
    return value


def _day(body: dict[str, Any], name: str) -> date:
    value = _text(body, name, required=True)
    assert value is not None
    return parse_day(name, value)


def _moment(body: dict[str, Any], name: str) -> datetime | None:
    value = _text(body, name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadRequestError(name, f"{name} must be a date-time with an offset")
    return moment


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequestError(name, f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


async def replay_dlq(request: web.Request) -> web.Response:
    body = await _body(request)
    positions_raw = body.get("positions", [])
    if not isinstance(positions_raw, list) or len(positions_raw) > 1000:
        raise BadRequestError("positions", "positions must be a list of up to 1000 'P:O' strings")
    try:
        positions = [parse_position(str(p)) for p in positions_raw]
    except ValueError as exc:
        raise BadRequestError("positions", str(exc)) from None
    selected = DlqFilter(_text(body, "reason"), _text(body, "seller_tax_id"),
                         _text(body, "invoice_number"), _moment(body, "since"),
                         _moment(body, "until"))  # fmt: skip
    everything, dry_run = _flag(body, "all"), _flag(body, "dry_run")
    if selected.empty and not positions and not everything:
        raise BadRequestError("all", "select records with a filter, positions, or all: true")
    settings = request.app[SETTINGS]
    found, missing = await select_records(settings, selected, positions)
    if missing:
        where = ", ".join(f"{p}:{o}" for p, o in missing)
        return _json({"code": "NOT_FOUND", "message": f"no dead letter at {where}"}, 404)
    answer: dict[str, Any] = {"selected": [r.position for r in found], "dry_run": dry_run,
                              "replayed": 0, "failed": []}  # fmt: skip
    if dry_run or not found:
        return _json(answer)
    name = actor(request)
    ledger = request.app[LEDGER]
    done = await replay_and_audit(settings, ledger, found, actor=name, by=name)
    answer["replayed"] = sum(r.ok for r in done)
    answer["failed"] = [{"position": r.record.position, "error": r.error} for r in done if not r.ok]
    return _json(answer)


async def repair(request: web.Request) -> web.Response:
    body = await _body(request)
    seller = _text(body, "seller_tax_id", required=True)
    assert seller is not None
    first, last = _day(body, "from"), _day(body, "to")
    if first > last:
        raise BadRequestError("from", "from must not be after to")
    ledger = request.app[LEDGER]
    async with PlatformClient.from_settings(request.app[SETTINGS]) as pc:
        comparison, redrive = await reconcile_and_repair(ledger, pc, seller, first, last,
                                                         actor=actor(request))  # fmt: skip
    return _json({
        "counts": comparison.counts(),
        "redriven": redrive.redriven,
        "skipped": [{"invoice_number": n, "reason": why} for n, why in redrive.skipped],
    })  # fmt: skip


async def sweep_now(request: web.Request) -> web.Response:
    body = await _body(request)
    older_than = _number(body, "older_than_seconds", 900.0, 0, 10**8)
    limit = int(_number(body, "limit", 1000, 1, 1000))
    ledger = request.app[LEDGER]
    result = await sweep(ledger, request.app[SETTINGS], older_than, actor=actor(request),
                         dry_run=_flag(body, "dry_run"), limit=limit,
                         seller_tax_id=_text(body, "seller_tax_id"))  # fmt: skip
    return _json({
        "stuck": [record_view(r) for r in result.stuck],
        "republished": result.republished.redriven,
        "skipped": [{"invoice": k, "reason": why} for k, why in result.republished.skipped],
        "receipts_polled": result.receipts_polled,
        "receipts_settled": result.receipts_settled,
    })  # fmt: skip


async def list_tokens(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    tokens = await TokenStore(ledger).list()
    return _json({"items": [
        {"name": t.name, "role": t.role, "created_at": t.created_at.isoformat(),
         "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}
        for t in tokens
    ]})  # fmt: skip


async def new_token(request: web.Request) -> web.Response:
    body = await _body(request)
    name = _text(body, "name", required=True)
    if name is None or _TOKEN_NAME.fullmatch(name) is None:
        raise BadRequestError("name", "name must be 1-64 of letters, digits and . _ @ : -")
    role = body.get("role")
    if role not in ROLES:
        raise BadRequestError("role", f"role must be one of {', '.join(ROLES)}")
    ledger = request.app[LEDGER]
    try:
        token = await create_token(ledger, name, role, actor=actor(request))
    except DuplicateTokenError as exc:
        return _json({"code": "CONFLICT", "message": exc.message}, 409)
    return _json({"name": name, "role": role, "token": token}, 201)


async def delete_token(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    ledger = request.app[LEDGER]
    done = "\x00" not in name and await revoke_token(ledger, name, actor=actor(request))
    if not done:
        return _json({"code": "NOT_FOUND", "message": "no active token of that name"}, 404)
    return _json({"name": name, "revoked": True})
