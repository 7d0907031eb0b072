"""Helpers for the fault tests: pipelines on servers the test owns, and workers as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest_asyncio

from tests.helpers.pipeline import Pipeline, Pipelines
from tests.helpers.settings import REPO, make_settings


@pytest_asyncio.fixture(loop_scope="session")
async def stack_factory():
    """Like pipeline_factory, but on the pool and Temporal client the test gives: a Postgres or a
    Temporal server of its own, which it may stop and start."""
    pipelines = Pipelines()

    async def start(*, pool, client, temporal_address: str, **overrides) -> Pipeline:
        from activities.runtime import build_resources

        settings = make_settings(temporal_address=temporal_address, **overrides)
        resources = await build_resources(settings, pool)
        return await pipelines.start(
            settings, f"r{uuid.uuid4().hex[:10]}", pool=pool, client=client, resources=resources, http_timeout=60
        )

    yield start
    await pipelines.stop_all()


class WorkerProcess:
    """`python worker.py` in its own process, so that a test can SIGKILL it."""

    def __init__(self, env: dict[str, str], log_file: Path):
        self.env = env
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PAGEPERFECT_", "OPENAI_"))}
        env.update(self.env)
        log = open(self.log_file, "ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "worker.py"),
            cwd=str(REPO),
            env=env,
            stdout=log,
            stderr=log,
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
