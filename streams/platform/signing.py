"""HMAC request signing of the tax-platform contract (shared by client and sandbox)."""

from __future__ import annotations

import hashlib
import hmac
import time
from functools import lru_cache

from streams.randomids import random_token


def signing_string(
    method: str, path_qs: str, timestamp_ms: str, nonce: str, body: bytes,
    body_sha256: str | None = None,
) -> str:  # fmt: skip
    """The five LF-joined parts the contract signs; ``path_qs`` exactly as sent.
    ``body_sha256``: the body's lowercase hex SHA-256, when the caller has it already."""
    if body_sha256 is None:
        body_sha256 = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path_qs, timestamp_ms, nonce, body_sha256))


def sign(
    secret: str, method: str, path_qs: str, timestamp_ms: str, nonce: str, body: bytes,
    body_sha256: str | None = None,
) -> str:  # fmt: skip
    """Lowercase hex HMAC-SHA256 of the signing string under ``secret``."""
    mac = _keyed(secret).copy()
    mac.update(signing_string(method, path_qs, timestamp_ms, nonce, body, body_sha256).encode())
    return mac.hexdigest()


@lru_cache(maxsize=16)
def _keyed(secret: str) -> hmac.HMAC:
    # An HMAC keyed once and copied per request: keying hashes the secret into two
    # pads each time, a third of a signature's cost. A client has one secret, the
    # sandbox one per app.
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, so a forger learns nothing from timing."""
    return hmac.compare_digest(expected.encode(), given.encode())


def signed_headers(
    app_id: str, secret: str, method: str, path_qs: str, body: bytes,
    body_sha256: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """The four headers that authenticate one request: a fresh timestamp and nonce."""
    timestamp = str(time.time_ns() // 1_000_000)
    nonce = random_token()
    return {
        "X-App-Id": app_id,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": sign(secret, method, path_qs, timestamp, nonce, body, body_sha256),
    }
