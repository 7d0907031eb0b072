"""The AES-GCM payload codec: key parsing, rotation, wrong keys, tampering, pass-through."""

from __future__ import annotations

import base64
import os

import pytest
from temporalio.api.common.v1 import Payload

from pageperfect.runtime.codec import ENCODING, KEY_ID_METADATA, EncryptionCodec, PayloadKeyError, parse_keys


def _key() -> bytes:
    return os.urandom(32)


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"url": "https://example.com/secret-page"}')


def test_parse_keys_single_and_rotation():
    one, two = _key(), _key()
    assert parse_keys(_b64(one), "main") == [("main", one)]
    assert parse_keys(f"new:{_b64(two)}, old:{base64.urlsafe_b64encode(one).decode()}") == [("new", two), ("old", one)]
    for bad, message in [
        ("", "empty"),
        ("not*base64", "base64"),
        (_b64(os.urandom(16)), "32"),
        (f"{_b64(one)},{_b64(two)}", "id:key"),
        (f"a:{_b64(one)},a:{_b64(two)}", "twice"),
    ]:
        with pytest.raises(PayloadKeyError, match=message):
            parse_keys(bad)


async def test_round_trip_hides_the_data_and_names_the_key():
    codec = EncryptionCodec([("k1", _key())])
    [sealed] = await codec.encode([PLAIN])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert b"secret-page" not in sealed.SerializeToString()
    [again] = await codec.encode([PLAIN])
    assert again.data != sealed.data  # a fresh nonce every time
    assert await codec.decode([sealed]) == [PLAIN]


async def test_rotation_encrypts_with_the_first_and_decrypts_with_any():
    old, new = _key(), _key()
    [from_old] = await EncryptionCodec([("old", old)]).encode([PLAIN])
    rotated = EncryptionCodec([("new", new), ("old", old)])
    [from_new] = await rotated.encode([PLAIN])
    assert from_new.metadata[KEY_ID_METADATA] == b"new"
    assert await rotated.decode([from_old, from_new]) == [PLAIN, PLAIN]


async def test_wrong_missing_and_tampered_keys_fail_clearly():
    [sealed] = await EncryptionCodec([("k1", _key())]).encode([PLAIN])
    with pytest.raises(PayloadKeyError, match="wrong"):
        await EncryptionCodec([("k1", _key())]).decode([sealed])
    with pytest.raises(PayloadKeyError, match="not configured"):
        await EncryptionCodec([("k2", _key())]).decode([sealed])
    key = _key()
    [sealed] = await EncryptionCodec([("k1", key)]).encode([PLAIN])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(PayloadKeyError, match="altered"):
        await EncryptionCodec([("k1", key)]).decode([tampered])


async def test_unencrypted_payloads_pass_through_decode():
    assert await EncryptionCodec([("k1", _key())]).decode([PLAIN]) == [PLAIN]


async def test_a_payload_too_short_to_hold_a_nonce_is_refused_not_crashed():
    short = Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"k1"}, data=b"abc")
    with pytest.raises(PayloadKeyError):
        await EncryptionCodec([("k1", _key())]).decode([short])
