"""The `pageperfect` and `temporal` commands as a user runs them: the environment, a run, `up` started and stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from pageperfect.runtime.temporal import temporal_binary


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


async def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
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


async def run_merged(
    program: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 180
) -> tuple[int, str]:
    """A command's exit code and its output, stderr merged into stdout as a terminal shows them; asynchronous,
    so this test's event loop keeps serving the API."""
    process = await asyncio.create_subprocess_exec(
        program, *args, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


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


def start_up(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen:
    """`pageperfect up` on these ports (api, temporal, ui and, when given, metrics) with nothing of the caller's
    stack or keys in its environment: it starts its own and makes its own key in `data_dir`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "OPENAI_API_KEY", "PAGEPERFECT_API_KEYS")
    }
    env["PAGEPERFECT_ALLOWED_HOSTS"] = "127.0.0.1"
    args = [sys.executable, "-m", "pageperfect.cli", "up", "--data-dir", str(data_dir)]
    for name in ("api", "temporal", "ui", "metrics"):
        if name in ports:
            args += [f"--{name}-port", str(ports[name])]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_up(process: subprocess.Popen) -> tuple[int, str]:
    """SIGTERM to `up`, as Ctrl-C would; its exit code and output, once it and every process it started are gone."""
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    return process.returncode, output


def temporal_workflow(action: str, address: str, created: dict, *extra: str) -> list[str]:
    """The `temporal workflow ACTION` command line for the run of a job the API `created`."""
    return [
        temporal_binary(),
        "workflow",
        action,
        "--address",
        address,
        "--workflow-id",
        created["workflow_id"],
        "--run-id",
        created["run_id"],
        *extra,
    ]
