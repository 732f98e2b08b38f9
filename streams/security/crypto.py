"""Payload encryption at rest: AES-GCM with a key ring, so keys can rotate.

``INVOICE_SYNC_PAYLOAD_KEY`` holds ``keyid:base64key[,keyid:base64key...]``; the first
key seals new payloads, the others only open rows sealed before a rotation
(``invoice-sync rekey`` moves those onto the current key). Each sealed payload is
bound to its invoice (the key is the AEAD's associated data), so a ciphertext copied
onto another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.errors import ConfigurationError, LedgerError
from streams.settings import Settings

_NONCE_BYTES = 12


class PayloadCipher:
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ConfigurationError(f"payload key {current!r} is not in the key ring")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    def __repr__(self) -> str:
        return f"PayloadCipher(current={self.current!r}, keys={sorted(self._keys)!r})"

    @classmethod
    def from_setting(cls, value: str) -> PayloadCipher:
        keys: dict[str, bytes] = {}
        for index, part in enumerate(value.split(",")):
            key_id, sep, encoded = part.strip().partition(":")
            if not sep or not key_id:
                raise ConfigurationError(
                    f"INVOICE_SYNC_PAYLOAD_KEY entry {index + 1}: expected keyid:base64key"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConfigurationError(
                    f"INVOICE_SYNC_PAYLOAD_KEY key {key_id!r} is not valid base64"
                ) from exc
            if len(key) not in (16, 24, 32):
                raise ConfigurationError(
                    f"INVOICE_SYNC_PAYLOAD_KEY key {key_id!r} must be 16, 24 or 32 bytes, "
                    f"got {len(key)}"
                )
            keys[key_id] = key
        first = value.split(",")[0].partition(":")[0].strip()
        return cls(keys, first)

    def seal(self, plaintext: bytes, *, context: bytes) -> tuple[bytes, str]:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._keys[self.current].encrypt(nonce, plaintext, context)
        return sealed, self.current

    def open(self, sealed: bytes, key_id: str, *, context: bytes) -> bytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise LedgerError(
                f"payload sealed with key {key_id!r}, which INVOICE_SYNC_PAYLOAD_KEY does not "
                "hold: add it back (after the current key) until `invoice-sync rekey` has run"
            )
        try:
            return aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise LedgerError(
                f"payload of {context.decode()} does not open with key {key_id!r}"
            ) from exc


def cipher_from(settings: Settings) -> PayloadCipher | None:
    """The ledger's cipher when ``INVOICE_SYNC_PAYLOAD_KEY`` is set."""
    if settings.payload_key is None:
        return None
    return PayloadCipher.from_setting(settings.payload_key.get_secret_value())


def new_key() -> str:
    """A fresh 256-bit key, base64, for ``INVOICE_SYNC_PAYLOAD_KEY``."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
