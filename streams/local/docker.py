"""Is a Docker engine reachable? A quick ``GET /_ping`` that never hangs.

We look where the Docker client testcontainers uses (docker-py ``from_env``) looks:
``DOCKER_HOST``, else ``/var/run/docker.sock``. So "available" here means
"testcontainers will find it", not merely "some engine exists somewhere".
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

_DEFAULT_SOCKET = "/var/run/docker.sock"
_PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"


def docker_available(docker_host: str | None = None, *, timeout: float = 1.0) -> bool:
    """True when the engine at ``docker_host`` answers ``/_ping`` within ``timeout`` s.

    ``docker_host`` defaults to ``DOCKER_HOST``: read here rather than in ``Settings``
    because it is the Docker client's own variable, the one testcontainers will obey.
    TLS (``DOCKER_TLS_VERIFY``) and ``ssh://`` engines count as unavailable.
    """
    if docker_host is None:
        docker_host = os.environ.get("DOCKER_HOST") or f"unix://{_DEFAULT_SOCKET}"
    url = urlsplit(docker_host)
    try:
        if url.scheme in ("unix", ""):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            with sock:
                sock.connect(url.path or _DEFAULT_SOCKET)
                return _ping(sock)
        if url.scheme in ("tcp", "http"):
            address = (url.hostname or "127.0.0.1", url.port or 2375)
            with socket.create_connection(address, timeout=timeout) as sock:
                sock.settimeout(timeout)
                return _ping(sock)
    except OSError:  # refused, missing socket, timeout: all mean "not here"
        return False
    return False


def _ping(sock: socket.socket) -> bool:
    sock.sendall(_PING)
    reply = b""
    while b"\r\n" not in reply and len(reply) < 1024:
        chunk = sock.recv(1024)
        if not chunk:
            break
        reply += chunk
    status_line = reply.split(b"\r\n", 1)[0].split()
    return len(status_line) >= 2 and status_line[1] == b"200"
