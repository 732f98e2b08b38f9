"""Every route of the worker's API declares who may call it; a new one cannot slip by."""

from __future__ import annotations

from streams.api.server import ROUTE_ROLES, build_api
from streams.ledger.store import Ledger
from streams.processor.health import Health

PUBLIC = {"/healthz", "/readyz", "/metrics"}


def test_every_route_has_a_declared_role() -> None:
    app = build_api(Ledger("postgresql://unused/db", worker_id="t"), Health())
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert routes, "no routes found"
    undeclared = routes - ROUTE_ROLES.keys()
    assert not undeclared, f"routes without a declared role: {sorted(undeclared)}"
    for (_, path), role in ROUTE_ROLES.items():
        assert (role is None) == (path in PUBLIC), f"{path}: only probes and metrics are open"
