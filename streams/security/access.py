"""Who may call which HTTP endpoint: bearer tokens, roles, and a brake on guessing.

Every route must be declared in the table given to ``access_middleware``: an
undeclared route answers 403 to everyone (and a test fails), so a new endpoint is never
open by accident.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from streams.security.tokens import Role, Token, allows

#: (method, route template) → the role needed, or None for public (probes, metrics)
RouteRoles = Mapping[tuple[str, str], Role | None]
TOKEN = web.RequestKey("token", Token)


class TokenVerifier(Protocol):
    async def verify(self, presented: str) -> Token | None: ...


_FAILURE_WINDOW = 60.0
_FAILURES_ALLOWED = 10


def _deny(status: int, code: str, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(int(retry_after) + 1)} if retry_after else None
    return web.Response(
        body=orjson.dumps({"code": code, "message": message}), status=status,
        content_type="application/json", headers=headers,
    )  # fmt: skip


class FailureBrake:
    """Rate-limits clients that keep presenting bad tokens (per remote address).

    Memory is bounded: only clients with a failure inside the window are kept, and at
    most ``max_clients`` of them, the ones that failed longest ago going first (many
    addresses guessing at once lose their oldest records, not the worker its memory)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, max_clients: int = 10_000
    ) -> None:
        self._clock = clock
        self._max_clients = max_clients
        #: client → times of its recent failures; ordered by each client's last failure
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def blocked_for(self, client: str) -> float | None:
        recent = self._recent(client)
        if len(recent) < _FAILURES_ALLOWED:
            return None
        return _FAILURE_WINDOW - (self._clock() - recent[0])

    def failed(self, client: str) -> None:
        now = self._clock()
        recent = self._recent(client)
        recent.append(now)
        self._failures[client] = recent
        self._failures.move_to_end(client)
        # The oldest last failures are at the front: drop those out of the window, then
        # any beyond the cap.
        while self._failures:
            oldest, times = next(iter(self._failures.items()))
            if len(self._failures) <= self._max_clients and now - times[-1] <= _FAILURE_WINDOW:
                break
            del self._failures[oldest]

    def _recent(self, client: str) -> deque[float]:
        recent = self._failures.get(client, deque())
        while recent and self._clock() - recent[0] > _FAILURE_WINDOW:
            recent.popleft()
        if not recent:
            self._failures.pop(client, None)
        return recent


def access_middleware(
    tokens: TokenVerifier, roles: RouteRoles, brake: FailureBrake | None = None
) -> Middleware:
    brake = brake or FailureBrake()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request.match_info.route.resource
        template = info.canonical if info is not None else request.path
        # aiohttp answers HEAD on every GET route: it needs what the GET needs.
        method = "GET" if request.method == "HEAD" else request.method
        declared = (method, template) in roles
        needed = roles.get((method, template))
        if declared and needed is None:
            return await handler(request)
        client = request.remote or "unknown"
        wait = brake.blocked_for(client)
        if wait is not None:
            return _deny(429, "TOO_MANY_FAILURES", "too many failed attempts; retry later", wait)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        token = await tokens.verify(presented.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            brake.failed(client)
            return _deny(401, "UNAUTHORIZED", "a valid bearer token is required")
        if not declared or needed is None or not allows(token.role, needed):
            need = needed or "undeclared"
            return _deny(403, "FORBIDDEN", f"this endpoint needs the {need} role")
        request[TOKEN] = token
        return await handler(request)

    return check
