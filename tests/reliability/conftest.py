"""Helpers for the fault tests: pipelines on servers the test owns, and workers as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest_asyncio
import uvicorn

from pageperfect.stack import free_port
from tests.conftest import REPO, Pipeline, make_settings

try:  # the API key the suite's API accepts, where the API asks for one
    from tests.conftest import TEST_API_KEY
except ImportError:  # pragma: no cover - an API without keys
    TEST_API_KEY = None


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TEST_API_KEY}"} if TEST_API_KEY else {}


@pytest_asyncio.fixture(loop_scope="session")
async def stack_factory():
    """Like pipeline_factory, but on the pool and Temporal client the test gives: a Postgres or a
    Temporal server of its own, which it may stop and start."""
    from activities.runtime import build_resources
    from api.app import create_app
    from worker import build_workers

    started: list[tuple[object, uvicorn.Server, asyncio.Task, httpx.AsyncClient]] = []

    async def start(*, pool, client, temporal_address: str, **overrides) -> Pipeline:
        settings = make_settings(temporal_address=temporal_address, **overrides)
        prefix = f"r{uuid.uuid4().hex[:10]}"
        resources = await build_resources(settings, pool)
        group = await build_workers(client, settings, pool, prefix=prefix, resources=resources)
        group.start()
        app = create_app(settings, pool=pool, client=client, queue_prefix=prefix)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=auth_headers())
        started.append((group, server, task, http))
        return Pipeline(settings, prefix, f"http://127.0.0.1:{port}", http, group)

    yield start
    for group, server, task, http in started:
        await http.aclose()
        server.should_exit = True
        await task
        await group.shutdown()


class WorkerProcess:
    """`python worker.py` in its own process, so that a test can SIGKILL it."""

    def __init__(self, env: dict[str, str], log_file: Path):
        self.env = env
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> "WorkerProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEPERFECT_", "OPENAI_"))}
        env.update(self.env)
        log = open(self.log_file, "ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "worker.py"), cwd=str(REPO), env=env, stdout=log, stderr=log,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to Temporal, in-flight activities and mirror writes lost."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
