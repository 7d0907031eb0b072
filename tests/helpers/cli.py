"""The `pageperfect` command as a user runs it: its environment, a run, and waiting for `up` to be healthy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx


def cli_env(pipeline, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: this pipeline's API and key, nothing from the caller's own setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TEMPORAL_ADDRESS", "DATABASE_URL", "PAGEPERFECT_API_URL", "PAGEPERFECT_API_KEY")
    }
    key = pipeline.http.headers.get("authorization", "").removeprefix("Bearer ")
    env.update(
        PAGEPERFECT_API_URL=pipeline.api_url,
        PAGEPERFECT_DATA_DIR=str(tmp_path / "cli-data"),
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
        **({"PAGEPERFECT_API_KEY": key} if key else {}),
    )
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """The CLI as a user runs it; in a thread, so this test's event loop keeps serving the API."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pageperfect.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_healthy(api: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("pageperfect up never became healthy")
