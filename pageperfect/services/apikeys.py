"""API keys: made at random, kept only as a SHA-256, checked in constant time.

Keys come from PAGEPERFECT_API_KEYS (comma-separated) or from `pageperfect keys create`,
which stores the hash in pageperfect_api_keys. A key of 32 random bytes needs no slow
hash: nobody can guess one from its SHA-256.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from db import queries

KEY_PREFIX = "pp_"
LOCAL_KEY_FILE = "api-key"  # in the data dir: the key `pageperfect up` made for this machine
LOCAL_KEY_NAME = "local (pageperfect up)"


class KeyStatus(enum.Enum):
    VALID = "valid"
    UNKNOWN = "unknown"
    REVOKED = "revoked"


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    key: str  # shown once; only its hash is stored


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]


async def check_key(pool: asyncpg.Pool, presented: str, env_keys: list[str]) -> KeyStatus:
    digest = key_hash(presented)
    # Every configured key is compared, so the time taken says nothing about which one matched.
    matched = False
    for configured in env_keys:
        matched |= hmac.compare_digest(digest, key_hash(configured))
    if matched:
        return KeyStatus.VALID
    row = await queries.find_api_key(pool, digest)
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return KeyStatus.UNKNOWN
    return KeyStatus.REVOKED if row["revoked_at"] is not None else KeyStatus.VALID


async def create_key(pool: asyncpg.Pool, name: str = "") -> NewKey:
    key = generate_key()
    row = await queries.insert_api_key(pool, name=name, key_hash=key_hash(key), key_prefix=_display_prefix(key))
    assert row is not None  # INSERT … RETURNING gives its row
    return NewKey(id=row["id"], name=row["name"], key=key)


async def list_keys(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await queries.list_api_keys(pool)


async def revoke_key(pool: asyncpg.Pool, key_id: int) -> asyncpg.Record | None:
    return await queries.revoke_api_key(pool, key_id)


def read_local_key(data_dir: Path) -> str | None:
    path = Path(data_dir) / LOCAL_KEY_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


async def ensure_local_key(pool: asyncpg.Pool, data_dir: Path) -> str:
    """The data dir's key for local use: kept while it is valid, made anew if missing or revoked."""
    existing = read_local_key(data_dir)
    if existing and await check_key(pool, existing, []) is KeyStatus.VALID:
        return existing
    new = await create_key(pool, LOCAL_KEY_NAME)
    path = Path(data_dir) / LOCAL_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # Readable by its owner only, from the moment it exists.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(new.key + "\n")
    path.chmod(0o600)
    return new.key


def client_key(settings) -> str | None:
    """The key a client on this machine sends: PAGEPERFECT_API_KEY, else the local one in the data dir."""
    if settings.api_key is not None and settings.api_key.get_secret_value().strip():
        return settings.api_key.get_secret_value().strip()
    return read_local_key(settings.data_dir)


async def stack_key(pool: asyncpg.Pool, settings) -> tuple[str, str]:
    """The key `pageperfect up` and the demo use, and where it comes from (never printed if from the env)."""
    if settings.env_api_keys:
        return settings.env_api_keys[0], "PAGEPERFECT_API_KEYS"
    data_dir = Path(settings.data_dir).resolve()
    return await ensure_local_key(pool, data_dir), str(data_dir / LOCAL_KEY_FILE)
