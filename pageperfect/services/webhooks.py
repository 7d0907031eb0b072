"""Webhooks: a signed JSON POST when a job or a batch ends.

The signature is HMAC-SHA256 over "<timestamp>.<body>" with PAGEPERFECT_WEBHOOK_SECRET,
sent as `PagePerfect-Signature: t=<timestamp>,v1=<hex>`; the timestamp lets a receiver
refuse old deliveries (replays). Deliveries go through the crawl's address guard, so a
webhook cannot reach loopback, private or metadata addresses unless they are allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import httpx

from pageperfect.sources.guard import AllowList, guarded_client, validate_url

SIGNATURE_HEADER = "PagePerfect-Signature"
DELIVERY_HEADER = "PagePerfect-Delivery"  # the same on every retry of one delivery: receivers dedupe on it
EVENT_HEADER = "PagePerfect-Event"
USER_AGENT = "PagePerfect-Webhook/1"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header's value for this body."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether the header signs this body with this secret, within DEFAULT_TOLERANCE_SECONDS of now."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > DEFAULT_TOLERANCE_SECONDS:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def encode_body(payload: dict) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


class WebhookRefused(Exception):
    """The receiver answered, but not with 2xx; worth another try later."""

    def __init__(self, status: int):
        super().__init__(f"the receiver answered HTTP {status}")
        self.status = status


@dataclass
class Delivered:
    status: int
    signature: str


async def deliver(
    url: str, payload: dict, *, secret: str, allow: AllowList, delivery_id: str, event: str, timeout: float = 15.0
) -> Delivered:
    """POST the signed payload once. Raises pageperfect.sources.guard.GuardError (no retry fixes it), WebhookRefused
    or httpx errors."""
    validate_url(url, allow)
    body = encode_body(payload)
    signature = sign(secret, body)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature,
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }
    async with guarded_client(allow, timeout=httpx.Timeout(timeout), user_agent=USER_AGENT) as http:
        response = await http.post(url, content=body, headers=headers)
    if not 200 <= response.status_code < 300:
        raise WebhookRefused(response.status_code)
    return Delivered(response.status_code, signature)
