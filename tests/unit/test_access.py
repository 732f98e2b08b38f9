"""Bearer tokens and roles at the HTTP edge: 401, 403, and a brake on guessing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.security.access import FailureBrake, RouteRoles, access_middleware
from streams.security.tokens import Role, Token

ROLES: RouteRoles = {
    ("GET", "/healthz"): None,
    ("GET", "/invoices/{id}"): "viewer",
    ("POST", "/replay"): "operator",
}


class Tokens:
    def __init__(self) -> None:
        self.known = {f"isk_{role}": role for role in ("viewer", "operator", "admin")}

    async def verify(self, presented: str) -> Token | None:
        role: Role | None = self.known.get(presented)  # type: ignore[assignment]
        return None if role is None else Token("id", role, role, datetime.now(UTC), None)


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[access_middleware(Tokens(), ROLES, FailureBrake())])
    app.router.add_get("/healthz", _ok)
    app.router.add_get("/invoices/{id}", _ok)
    app.router.add_post("/replay", _ok)
    app.router.add_get("/undeclared", _ok)
    async with TestClient(TestServer(app)) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_public_endpoints_need_no_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/invoices/1", None, 401),
        ("GET", "/invoices/1", "isk_bogus", 401),
        ("GET", "/invoices/1", "isk_viewer", 200),
        ("POST", "/replay", "isk_viewer", 403),
        ("POST", "/replay", "isk_operator", 200),
        ("POST", "/replay", "isk_admin", 200),
        ("GET", "/undeclared", "isk_admin", 403),
    ],
)
async def test_roles_are_enforced(
    client: TestClient[web.Request, web.Application], method: str, path: str,
    token: str | None, status: int,
) -> None:  # fmt: skip
    resp = await client.request(method, path, headers=_bearer(token) if token else None)
    assert resp.status == status
    if status >= 400:
        body = await resp.json()
        assert body["code"] in ("UNAUTHORIZED", "FORBIDDEN")
        assert "isk_" not in body["message"]


async def test_repeated_failures_are_rate_limited(
    client: TestClient[web.Request, web.Application],
) -> None:
    for _ in range(10):
        assert (await client.get("/invoices/1", headers=_bearer("isk_guess"))).status == 401
    blocked = await client.get("/invoices/1", headers=_bearer("isk_viewer"))
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) > 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_brake_forgets_clients_whose_failures_are_old() -> None:
    clock = Clock()
    brake = FailureBrake(clock)
    for n in range(100):
        brake.failed(f"10.0.0.{n}")
    assert len(brake) == 100
    clock.now += 61  # past the one-minute window
    brake.failed("10.0.1.1")
    assert len(brake) == 1
    # Asking about a client that never failed keeps nothing about it.
    assert brake.blocked_for("10.0.2.2") is None
    assert len(brake) == 1


def test_the_brake_keeps_at_most_max_clients_dropping_the_longest_quiet() -> None:
    clock = Clock()
    brake = FailureBrake(clock, max_clients=3)
    for _ in range(10):
        brake.failed("guesser")
    for n in range(3):
        clock.now += 1
        brake.failed(f"other-{n}")
    assert len(brake) == 3
    assert brake.blocked_for("guesser") is None  # evicted: it failed longest ago
    clock.now += 1
    for _ in range(10):
        brake.failed("guesser")
    assert brake.blocked_for("guesser") is not None
    assert len(brake) == 3
