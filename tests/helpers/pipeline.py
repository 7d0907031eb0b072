"""A pipeline per test: workers on a task-queue prefix of their own and the API on a free port."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import uvicorn

from pageperfect.models import FINAL_STATUSES
from pageperfect.runtime.stack import free_port
from pageperfect.settings import Settings
from tests.helpers.settings import TEST_API_KEY


@dataclass
class Pipeline:
    """Workers on a fresh queue prefix and the API on a free port, against the session's servers."""

    settings: Settings
    prefix: str
    api_url: str
    http: httpx.AsyncClient
    group: object
    extra: dict = field(default_factory=dict)

    async def submit(self, **body) -> dict:
        response = await self.http.post("/v1/jobs", json=body)
        assert response.status_code in (200, 202), response.text
        return response.json()

    async def completed_result(self, **body) -> tuple[dict, dict]:
        """Submit a job, wait for it to complete: the submission's answer and the job's result."""
        submitted = await self.submit(**body)
        job = await self.wait(submitted["job_id"])
        assert job["status"] == "completed", job
        return submitted, (await self.http.get(f"/v1/jobs/{submitted['job_id']}/result")).json()

    async def wait(self, job_id: str, *, timeout: float = 90, statuses=tuple(FINAL_STATUSES)) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = (await self.http.get(f"/v1/jobs/{job_id}")).json()
            if job["status"] in statuses:
                await self.group.writer.flush()
                return (await self.http.get(f"/v1/jobs/{job_id}")).json()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
            await asyncio.sleep(0.2)


class Pipelines:
    """Workers and an API on a task-queue prefix of their own, per test; all stopped at the end."""

    def __init__(self) -> None:
        self._started: list[tuple[object, uvicorn.Server, asyncio.Task, httpx.AsyncClient]] = []

    async def start(
        self, settings: Settings, prefix: str, *, pool, client, resources, queues=None, http_timeout: float = 30
    ) -> Pipeline:
        from api.app import create_app
        from pageperfect.runtime.worker import build_workers

        group = await build_workers(
            client, settings, pool, prefix=prefix, resources=resources, **({"queues": queues} if queues else {})
        )  # queues: only these kinds
        group.start()
        app = create_app(settings, pool=pool, client=client, queue_prefix=prefix)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=http_timeout,
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        )
        self._started.append((group, server, task, http))
        return Pipeline(settings, prefix, f"http://127.0.0.1:{port}", http, group)

    async def stop_all(self) -> None:
        for group, server, task, http in self._started:
            await http.aclose()
            server.should_exit = True
            await task
            await group.shutdown()


async def until_stage(pipeline, job_id: str, stage: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        job = (await pipeline.http.get(f"/v1/jobs/{job_id}")).json()
        if job["stage"] == stage:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {stage}")
