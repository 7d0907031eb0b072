"""Payload encryption: an AES-256-GCM codec for every payload the workflows and activities send.

Temporal stores the encrypted bytes; workers, clients, the Replayer and the codec
endpoint (api/codec.py) hold the keys. The key id travels in each payload's metadata,
so keys can be rotated: encrypt with the first key, decrypt with any configured one.
Payloads that are not encrypted pass through decode unchanged (histories from before
encryption was switched on stay readable).

    PAGEPERFECT_PAYLOAD_KEY=<base64 of 32 random bytes>          (id from PAGEPERFECT_PAYLOAD_KEY_ID)
    PAGEPERFECT_PAYLOAD_KEY=k2:<base64>,k1:<base64>               (rotation: k2 encrypts, both decrypt)
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32


class PayloadKeyError(ValueError):
    """A payload key that is missing, malformed, or not the one a payload was encrypted with."""


def parse_keys(raw: str, default_id: str = "k1") -> list[tuple[str, bytes]]:
    """`key` or `id:key,id:key` -> [(id, 32 bytes)], the encrypting key first."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise PayloadKeyError("PAGEPERFECT_PAYLOAD_KEY is empty")
    keys: list[tuple[str, bytes]] = []
    for item in items:
        # base64 has no ':', so a ':' always separates an id from its key.
        key_id, _, encoded = item.rpartition(":")
        if not key_id:
            if len(items) > 1:
                raise PayloadKeyError("with several payload keys, give each an id: id:key,id:key")
            key_id = default_id
        if any(existing == key_id for existing, _ in keys):
            raise PayloadKeyError(f"payload key id {key_id!r} is given twice")
        keys.append((key_id, _decode_key(key_id, encoded)))
    return keys


def _decode_key(key_id: str, encoded: str) -> bytes:
    urlsafe = "-" in encoded or "_" in encoded  # accept either base64 alphabet
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadKeyError(f"payload key {key_id!r} is not base64") from None
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(
            f"payload key {key_id!r} is {len(key)} bytes; it must be {KEY_BYTES} (e.g. `openssl rand -base64 32`)"
        )
    return key


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise PayloadKeyError("an encryption codec needs at least one key")
        self._encrypt_id, first = keys[0]
        self._encrypt_with = AESGCM(first)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._encrypt_id.encode()
        # The key id is authenticated too: a payload cannot be passed off under another key's id.
        sealed = self._encrypt_with.encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id}, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"payload was encrypted with key id {key_id!r}, which is not configured "
                f"(configured: {', '.join(self._ciphers)})"
            )
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise PayloadKeyError(
                f"payload does not decrypt with key {key_id!r}: the key is wrong or the payload was altered"
            ) from None
        return Payload.FromString(plain)


def codec_from_settings(settings) -> EncryptionCodec | None:
    """The codec the settings ask for, or None when payload encryption is off."""
    if settings.payload_key is None or not settings.payload_key.get_secret_value().strip():
        return None
    return EncryptionCodec(parse_keys(settings.payload_key.get_secret_value(), settings.payload_key_id))
