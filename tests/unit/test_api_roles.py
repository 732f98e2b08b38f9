"""Every route of the worker's real API declares who may call it, and the access check
enforces exactly that: each route is called with no token and with each role."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.api.server import ROUTE_ROLES, build_api
from streams.ledger.store import Ledger
from streams.processor.health import Health
from streams.security.access import FailureBrake, access_middleware
from streams.security.tokens import ROLES, Role, Token, allows
from streams.settings import Settings

PUBLIC = {"/healthz", "/readyz", "/metrics"}
CALLERS: tuple[Role | None, ...] = (None, *ROLES)


class FakeTokens:
    """``isk_<role>`` is a live token of that role; nothing else is."""

    async def verify(self, presented: str) -> Token | None:
        role = presented.removeprefix("isk_")
        if role not in ROLES:
            return None
        return Token("id", f"{role}-bot", role, datetime.now(UTC), None)  # type: ignore[arg-type]


def real_app() -> web.Application:
    # A ledger never started: a call that gets past the access check fails behind it
    # (the 4xx/5xx of the handler), which is all this test needs to see.
    access = access_middleware(FakeTokens(), ROUTE_ROLES, FailureBrake())
    return build_api(Ledger("postgresql://unused/db", worker_id="t"), Health(),
                     settings=Settings(), middlewares=[access])  # fmt: skip


def app_routes() -> list[tuple[str, str]]:
    return sorted(
        (route.method, route.resource.canonical)
        for route in real_app().router.routes()
        if route.method != "HEAD" and route.resource is not None
    )


def test_every_route_has_a_declared_role() -> None:
    routes = set(app_routes())
    assert routes, "no routes found"
    undeclared = routes - ROUTE_ROLES.keys()
    assert not undeclared, f"routes without a declared role: {sorted(undeclared)}"
    assert not ROUTE_ROLES.keys() - routes, "roles declared for routes the API does not serve"
    for (_, path), role in ROUTE_ROLES.items():
        assert (role is None) == (path in PUBLIC), f"{path}: only probes and metrics are open"


def expected(needed: Role | None, caller: Role | None) -> str:
    if needed is None:
        return "allowed"
    if caller is None:
        return "401"
    return "allowed" if allows(caller, needed) else "403"


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-token")
@pytest.mark.parametrize("route", app_routes(), ids=lambda r: f"{r[0]} {r[1]}")
async def test_each_route_answers_each_role_as_declared(
    route: tuple[str, str], caller: Role | None
) -> None:
    method, template = route
    path = re.sub(r"\{[^}]+\}", "x", template)
    headers = {"Authorization": f"Bearer isk_{caller}"} if caller else {}
    async with TestClient(TestServer(real_app())) as client:
        response = await client.request(method, path, headers=headers, json={})
        status = response.status
    seen = "401" if status == 401 else "403" if status == 403 else "allowed"
    assert seen == expected(ROUTE_ROLES.get(route), caller), f"{method} {path}: {status}"
    if seen == "allowed":
        assert status not in (404, 405, 429), f"{method} {path}: {status}"
