"""Request authentication as the contract defines it: app id, timestamp, nonce, HMAC."""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from streams.platform.signing import sign, signatures_match

__all__ = ["AuthError", "Authenticator"]

#: how far X-Timestamp may be from the server clock, either way
WINDOW_SECONDS = 300.0


class AuthError(Exception):
    """Answered 401 UNAUTHORIZED; the message says which check failed."""


class Authenticator:
    def __init__(self, apps: Mapping[str, str], *, window_seconds: float = WINDOW_SECONDS) -> None:
        self.apps = dict(apps)
        self.window = window_seconds
        self._seen: set[tuple[str, str]] = set()
        # (forget after, app id, nonce): a nonce only needs remembering until its
        # timestamp leaves the window, because from then on the timestamp check
        # refuses the replay by itself; so memory is bounded by the request rate.
        self._expiry: list[tuple[float, str, str]] = []

    def verify(
        self,
        *,
        method: str,
        path_qs: str,
        headers: Mapping[str, str],
        body: bytes,
        now: float,
    ) -> str:
        """The authenticated app id; raises ``AuthError``. ``now`` in Unix seconds."""
        self._forget_expired(now)
        app_id = headers.get("X-App-Id", "")
        timestamp = headers.get("X-Timestamp", "")
        nonce = headers.get("X-Nonce", "")
        signature = headers.get("X-Signature", "")
        secret = self.apps.get(app_id)
        if secret is None:
            raise AuthError(f"unknown X-App-Id {app_id!r}" if app_id else "X-App-Id is missing")
        if not timestamp.isascii() or not timestamp.isdigit():
            raise AuthError("X-Timestamp must be Unix time in milliseconds, decimal digits")
        if not nonce:
            raise AuthError("X-Nonce is missing")
        skew = int(timestamp) / 1000 - now
        if abs(skew) > self.window:
            raise AuthError(
                f"X-Timestamp is {skew:+.0f} s from the platform clock "
                f"(at most {self.window:.0f} s allowed); check the client's clock"
            )
        expected = sign(secret, method, path_qs, timestamp, nonce, body)
        if not signatures_match(expected, signature):
            raise AuthError("X-Signature does not match the request")
        # Recorded only once the signature holds, so a forger cannot burn nonces.
        if (app_id, nonce) in self._seen:
            raise AuthError("X-Nonce was already used")
        self._seen.add((app_id, nonce))
        heapq.heappush(self._expiry, (int(timestamp) / 1000 + self.window, app_id, nonce))
        return app_id

    def remembered(self) -> int:
        """How many nonces are held (for the bounded-memory test)."""
        return len(self._seen)

    def _forget_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, app_id, nonce = heapq.heappop(self._expiry)
            self._seen.discard((app_id, nonce))
