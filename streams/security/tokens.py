"""API bearer tokens with roles. Only a salted hash is stored; the token is shown once.

A token reads ``isk_<id>_<secret>``: the id finds the row, the secret is checked against
its hash in constant time. The secret is 32 random bytes, so a fast salted SHA-256 is
enough (there is no password to guess) and keeps each API request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from streams.errors import LedgerError
from streams.ledger.store import Ledger
from streams.security.audit import audited

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
_PREFIX = "isk"


def allows(granted: str, needed: Role) -> bool:
    """admin ⊇ operator ⊇ viewer."""
    return _RANK.get(granted, -1) >= _RANK[needed]


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


class DuplicateTokenError(LedgerError):
    """Token names are unique, revoked ones included: the audit trail names tokens."""


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


class TokenStore:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def create(self, name: str, role: Role) -> str:
        """Returns the token; it cannot be shown again."""
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        try:
            async with self._ledger.connection() as conn:
                await conn.execute(
                    "INSERT INTO api_tokens (id, name, role, salt, hash) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    token_id, name, role, salt, _hash(secret, salt),
                )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateTokenError(f"a token called {name!r} exists already") from exc
        return f"{_PREFIX}_{token_id}_{secret}"

    async def list(self) -> list[Token]:
        async with self._ledger.connection() as conn:
            rows = await conn.fetch(
                "SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY created_at"
            )
        return [
            Token(r["id"], r["name"], r["role"], r["created_at"], r["revoked_at"]) for r in rows
        ]

    async def revoke(self, name: str) -> bool:
        async with self._ledger.connection() as conn:
            done = await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
                name,
            )
        return str(done).endswith(" 1")

    async def verify(self, presented: str) -> Token | None:
        """The live token ``presented`` stands for, or None; never says which part failed."""
        prefix, _, rest = presented.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != _PREFIX or not token_id or not secret:
            return None
        async with self._ledger.connection() as conn:
            row = await conn.fetchrow(
                "SELECT id, name, role, salt, hash, created_at, revoked_at FROM api_tokens "
                "WHERE id = $1",
                token_id,
            )
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(_hash(secret, row["salt"]), row["hash"]):
            return None
        return Token(row["id"], row["name"], row["role"], row["created_at"], None)


async def create_token(ledger: Ledger, name: str, role: Role, *, actor: str) -> str:
    """A new token (shown once), audited as ``actor`` without its secret."""
    async with audited(ledger, actor, "token.create", target=name) as audit:
        audit.detail["role"] = role
        return await TokenStore(ledger).create(name, role)


async def revoke_token(ledger: Ledger, name: str, *, actor: str) -> bool:
    """False when no active token has that name; audited as ``actor`` either way."""
    async with audited(ledger, actor, "token.revoke", target=name) as audit:
        done = await TokenStore(ledger).revoke(name)
        audit.outcome = "ok" if done else "not found"
    return done
