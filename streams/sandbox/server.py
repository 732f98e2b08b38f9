"""Running the sandbox: in-process for tests and the demo, or until cancelled for the CLI."""

from __future__ import annotations

import asyncio
import ipaddress
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType

from aiohttp import web

from streams.sandbox.app import SLOT, SandboxState, build_app
from streams.sandbox.auth import Authenticator
from streams.sandbox.faults import Faults
from streams.sandbox.store import Clock, SandboxStore, utc_now

__all__ = ["DEFAULT_APPS", "SandboxServer", "serve"]

#: the credentials ``Settings`` defaults to, so a bare sandbox and a bare worker agree
DEFAULT_APPS: Mapping[str, str] = MappingProxyType({"sandbox-app": "sandbox-secret"})


class SandboxServer:
    """The sandbox on ``host:port`` (0: any free port; ``url`` tells the real one).

    ``faults`` and ``store`` are live: a test changes ``faults`` between requests and
    reads ``store`` to see what was stored and how many POSTs it took. ``clock``
    (tz-aware "now") drives receipts, timestamps, quotas and maintenance windows.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        apps: Mapping[str, str] = DEFAULT_APPS,
        faults: Faults | None = None,
        admin: bool = False,
        clock: Clock = utc_now,
    ) -> None:
        self.host, self.port = host, port
        self.faults = faults if faults is not None else Faults()
        self.store = SandboxStore(clock)
        self.admin = admin
        self._state = SandboxState(self.store, self.faults, Authenticator(apps), asyncio.Event())
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL with the bound port, e.g. ``http://127.0.0.1:43117``."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    @property
    def apps(self) -> dict[str, str]:
        """The live app id → secret table: a test can revoke or fix credentials."""
        return self._state.auth.apps

    @property
    def started(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._state.stopping.clear()
        # A short shutdown grace: held in-doubt requests end on `stopping`, the rest are
        # quick, and a test should never wait the default minute for a stop.
        runner = web.AppRunner(
            build_app(self._state, admin=self.admin), access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            # aiohttp's default listen backlog (128) is below the connections a worker
            # opens at once (INVOICE_SYNC_PLATFORM_CONCURRENCY): a dropped SYN is retried
            # only after a second.
            site = web.TCPSite(runner, self.host, self.port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        self._url = f"http://{_url_host(self.host)}:{bound[1]}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._state.stopping.set()
        await runner.cleanup()
        # The stopped application may stay reachable from aiohttp's handler cache.
        runner.app[SLOT].state = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __del__(self) -> None:
        if getattr(self, "_runner", None) is not None:
            warnings.warn(
                f"unstopped {self!r}: call stop()", ResourceWarning, stacklevel=2, source=self
            )

    def __repr__(self) -> str:
        return f"<SandboxServer {self._url or 'not started'} admin={self.admin}>"


def _url_host(requested: str) -> str:
    # A wildcard bind is reachable on loopback; an IPv6 literal needs brackets in a URL.
    if requested in ("", "0.0.0.0"):
        return "127.0.0.1"
    if requested == "::":
        return "[::1]"
    try:
        is_v6 = ipaddress.ip_address(requested).version == 6
    except ValueError:
        is_v6 = False
    return f"[{requested}]" if is_v6 else requested


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    apps: Mapping[str, str] = DEFAULT_APPS,
    faults: Faults | None = None,
    admin: bool = False,
    on_started: Callable[[SandboxServer], None] | None = None,
) -> None:
    """Serve until cancelled; ``on_started`` sees the running server (to log its URL)."""
    async with SandboxServer(host, port, apps=apps, faults=faults, admin=admin) as server:
        if on_started is not None:
            on_started(server)
        await asyncio.Event().wait()
