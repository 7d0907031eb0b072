"""API keys: every route but /healthz (and the docs) needs one; created keys are hashed and can be revoked."""

from __future__ import annotations

import os
import re
import subprocess

import httpx

from pageperfect.services import apikeys
from tests.helpers.cli import run_cli
from tests.helpers.settings import TEST_API_KEY


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_requests_without_a_key_get_401_with_a_challenge(pipeline):
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as anonymous:
        for method, path in [
            ("GET", "/v1/jobs"),
            ("GET", "/v1/dead-letters"),
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000"),
            ("POST", "/codec/decode"),
        ]:
            response = await anonymous.request(method, path, json={"url": "https://example.com/"})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer" in response.json()["detail"]
        # Basic credentials are not an API key either.
        response = await anonymous.get("/v1/jobs", auth=("user", TEST_API_KEY))
        assert response.status_code == 401


async def test_an_unknown_key_gets_401(pipeline):
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as wrong:
        response = await wrong.get("/v1/jobs", headers=_bearer(TEST_API_KEY + "x"))
        assert response.status_code == 401
        assert "invalid_token" in response.headers["www-authenticate"]
        assert "unknown API key" in response.json()["detail"]


async def test_env_key_created_key_and_revoked_key(pipeline, pool):
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as http:
        assert (await http.get("/v1/jobs", headers=_bearer(TEST_API_KEY))).status_code == 200

        created = await apikeys.create_key(pool, "test client")
        assert created.key.startswith("pp_") and len(created.key) > 40
        stored = [r for r in await apikeys.list_keys(pool) if r["id"] == created.id][0]
        assert created.key not in str(dict(stored))  # only a hash and a short prefix are kept
        assert await pool.fetchval(
            "SELECT key_hash FROM pageperfect_api_keys WHERE id = $1", created.id
        ) == apikeys.key_hash(created.key)
        assert (await http.get("/v1/jobs", headers=_bearer(created.key))).status_code == 200

        assert (await apikeys.revoke_key(pool, created.id))["revoked_at"] is not None
        revoked = await http.get("/v1/jobs", headers=_bearer(created.key))
        assert revoked.status_code == 403 and "revoked" in revoked.json()["detail"]
        assert await apikeys.revoke_key(pool, 10**12) is None


async def test_healthz_and_docs_stay_open(pipeline):
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/docs")).status_code == 200
        schema = (await anonymous.get("/openapi.json")).json()
        assert "APIKey" in schema["components"]["securitySchemes"]


async def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("PAGEPERFECT_API_KEY", "PAGEPERFECT_API_KEYS", "DATABASE_URL")
    }
    full_env.update(env)
    return await run_cli(*args, env=full_env, timeout=120)


async def test_keys_cli_creates_lists_and_revokes(pipeline, postgres_dsn, tmp_path):
    env = dict(DATABASE_URL=postgres_dsn, PAGEPERFECT_DATA_DIR=str(tmp_path))
    made = await _cli("keys", "create", "--name", "cli-test", **env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("pp_") and "cli-test" in made.stderr

    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as http:
        assert (await http.get("/v1/jobs", headers=_bearer(key))).status_code == 200

    listed = await _cli("keys", "list", **env)
    assert listed.returncode == 0 and "cli-test" in listed.stdout and key not in listed.stdout
    key_id = next(re.search(r"\d+", line).group() for line in listed.stdout.splitlines() if "cli-test" in line)
    revoked = await _cli("keys", "revoke", key_id, **env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as http:
        assert (await http.get("/v1/jobs", headers=_bearer(key))).status_code == 403
    assert (await _cli("keys", "revoke", "999999999", **env)).returncode == 1


async def test_cli_sends_the_key_from_the_environment(pipeline, tmp_path):
    env = dict(PAGEPERFECT_API_URL=pipeline.api_url, PAGEPERFECT_DATA_DIR=str(tmp_path))
    with_key = await _cli("jobs", "list", PAGEPERFECT_API_KEY=TEST_API_KEY, **env)
    assert with_key.returncode == 0, with_key.stderr
    without = await _cli("jobs", "list", **env)
    assert without.returncode == 1 and "401" in without.stderr
