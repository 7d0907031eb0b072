"""Webhook signatures: what the worker signs, the library's check, and the check docs/WEBHOOKS.md gives receivers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pageperfect.services.webhooks import encode_body, sign, verify

DOC = Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md"
BODY = encode_body({"type": "job.completed", "data": {"job_id": "j1", "status": "completed"}})


def documented_verifier():
    """The receiver's snippet from the docs, run as written."""
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation
    return namespace["verify_pageperfect"]


@pytest.mark.parametrize("check", [verify, documented_verifier()], ids=["library", "documented snippet"])
def test_signature_verifies_and_refuses_what_it_should(check):
    header = sign("s3cret", BODY)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert check("s3cret", BODY, header)
    assert not check("other", BODY, header)
    assert not check("s3cret", BODY.replace(b"completed", b"failed", 1), header)
    assert not check("s3cret", BODY, header.replace("v1=", "v1=0"))
    assert not check("s3cret", BODY, "garbage")
    assert not check("s3cret", BODY, "")
    old = sign("s3cret", BODY, timestamp=int(time.time()) - 3600)  # a replayed capture
    assert not check("s3cret", BODY, old)


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    header = sign("key", b'{"a":1}', timestamp=1700000000)
    expected = hmac.new(b"key", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_the_body_is_stable_bytes():
    assert encode_body({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'
