"""The open-file limit a worker needs: every platform request in flight holds a socket.

Many systems start processes with a soft limit of 1,024 open files and a far higher
hard limit. A worker at the default platform concurrency may hold more sockets than
that, and a request that finds no file descriptor fails as a transport error: retried,
but slower. A process may raise its own soft limit up to the hard one (Go programs do
it by themselves since Go 1.19); we raise it only as far as the settings need.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from streams.settings import Settings

log = logging.getLogger(__name__)

#: descriptors besides the platform pool: Kafka and PostgreSQL connections, the HTTP
#: API's, log files, the interpreter's own.
BESIDES_PLATFORM = 256
#: ``resource.RLIM_INFINITY`` on Linux and macOS
UNLIMITED = -1

Limits = tuple[int, int]


def open_files_needed(settings: Settings) -> int:
    return settings.platform_connections + BESIDES_PLATFORM


def _get() -> Limits:
    if sys.platform == "win32":
        return UNLIMITED, UNLIMITED  # no rlimits; the C runtime's own limit is far above
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _set(limits: Limits) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def raise_open_file_limit(
    need: int,
    *,
    get: Callable[[], Limits] = _get,
    set_: Callable[[Limits], None] = _set,
) -> int:
    """Raise the soft limit on open files to ``need``, or as far as the hard limit
    allows, and return the soft limit in force (-1: unlimited); warn when that is still short."""
    soft, hard = get()
    if soft == UNLIMITED or soft >= need:
        return soft
    wanted = need if hard == UNLIMITED else min(need, hard)
    if wanted > soft:
        set_((wanted, hard))
        soft = wanted
    if soft < need:
        log.warning(
            "the open-file limit is %d, below the %d this worker may need at "
            "INVOICE_SYNC_PLATFORM_CONCURRENCY: platform requests may fail with 'too many "
            "open files' and be retried; raise the hard limit (ulimit -Hn, systemd "
            "LimitNOFILE=) or lower the concurrency", soft, need,
        )  # fmt: skip
    return soft
