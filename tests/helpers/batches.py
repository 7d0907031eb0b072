"""Batches through the real API: a crawler that hangs on some pages, waiting for a batch, replaying its history."""

from __future__ import annotations

import asyncio

from temporalio.worker import Replayer

from pageperfect.runtime.temporal import data_converter
from pageperfect.sources.crawl import CrawlTicket
from pageperfect.models import BatchStatus


class HangOn:
    """Crawls for real, except pages whose path holds `marker`: their crawl never finishes (until cancelled)."""

    def __init__(self, inner, marker: str = "/hang-"):
        self.inner, self.marker, self.name = inner, marker, inner.name

    async def submit(self, url: str) -> CrawlTicket:
        if self.marker in url:
            return CrawlTicket(provider=self.name, ticket_id="never", result=None)
        return await self.inner.submit(url)

    async def poll(self, ticket_id: str):
        if ticket_id == "never":
            await asyncio.sleep(0)
            return None
        return await self.inner.poll(ticket_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def replays(client, workflow_id: str, settings) -> None:
    """The run's history replays against the current code of every workflow the worker runs."""
    from pageperfect.runtime.worker import worker_interceptors
    from workflows.registry import WORKFLOWS

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    await Replayer(
        workflows=list(WORKFLOWS), data_converter=data_converter(settings), interceptors=worker_interceptors(None)
    ).replay_workflow(history)


async def wait_ended(pipeline, path: str, *, timeout: float, interval: float = 0.3) -> dict:
    """The batch or site at `path` as the API shows it once it has ended and the mirror has written its rows."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = (await pipeline.http.get(path)).json()
        if body["status"] != BatchStatus.RUNNING:
            await pipeline.group.writer.flush()
            return (await pipeline.http.get(path)).json()
        assert asyncio.get_running_loop().time() < deadline, f"{path} still running: {body.get('counts')}"
        await asyncio.sleep(interval)


async def wait_batch(pipeline, batch_id: str, *, timeout: float = 180) -> dict:
    return await wait_ended(pipeline, f"/v1/batches/{batch_id}", timeout=timeout)


async def batch_when(pipeline, batch_id: str, predicate, *, timeout: float = 60) -> dict:
    """The batch as the API shows it, once predicate(batch) holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        batch = (await pipeline.http.get(f"/v1/batches/{batch_id}")).json()
        if predicate(batch):
            return batch
        assert asyncio.get_running_loop().time() < deadline, f"batch never got there: {batch['counts']}"
        await asyncio.sleep(0.2)
