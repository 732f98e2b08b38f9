"""HMAC request signing of the tax-platform contract (shared by client and sandbox)."""

from __future__ import annotations

import hashlib
import hmac
import time

from streams.randomids import random_uuid


def signing_string(method: str, path_qs: str, timestamp_ms: str, nonce: str, body: bytes) -> str:
    """The five LF-joined parts the contract signs; ``path_qs`` exactly as sent."""
    body_digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path_qs, timestamp_ms, nonce, body_digest))


def sign(secret: str, method: str, path_qs: str, timestamp_ms: str, nonce: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of the signing string under ``secret``."""
    message = signing_string(method, path_qs, timestamp_ms, nonce, body).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison, so a forger learns nothing from timing."""
    return hmac.compare_digest(expected.encode(), given.encode())


def signed_headers(
    app_id: str, secret: str, method: str, path_qs: str, body: bytes
) -> dict[str, str]:
    """The four headers that authenticate one request: a fresh timestamp and nonce."""
    timestamp = str(time.time_ns() // 1_000_000)
    nonce = random_uuid()
    return {
        "X-App-Id": app_id,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": sign(secret, method, path_qs, timestamp, nonce, body),
    }
