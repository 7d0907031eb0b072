"""PagePerfect's workers: one Worker per task queue kind served (all by default), read off the stage table.

`python worker.py [--queues crawl,ai]` and `pageperfect worker` run them; `pageperfect up` and the
test fixtures build them in their own process. Several such processes on several machines share the work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.worker import Worker

from activities.registry import activities_by_queue
from activities.runtime import Resources, build_resources, install
from db.pool import create_pool
from pageperfect.runtime.backends import BackendError, database, temporal_client, temporal_target
from pageperfect.runtime.mirror import MirrorInterceptor, MirrorWriter
from pageperfect.settings import Settings, get_settings
from pageperfect.runtime.temporal import ensure_search_attributes
from workflows.registry import WORKFLOWS
from pageperfect.stages import ALL_QUEUES, WORKFLOW_QUEUE, queue_name

log = logging.getLogger("pageperfect.worker")


def worker_interceptors(writer: MirrorWriter | None) -> list:
    """The interceptors every worker (and the Replayer) uses."""
    return [MirrorInterceptor(writer)] if writer is not None else []


@dataclass
class WorkerGroup:
    """The workers of one process, with what they share, shut down together."""

    workers: list[Worker]
    writer: MirrorWriter
    resources: Resources
    tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self.writer.start()
        self.tasks = [asyncio.create_task(w.run()) for w in self.workers]

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers), return_exceptions=True)
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.writer.close()
        await self.resources.aclose()


async def build_workers(
    client: Client,
    settings: Settings,
    pool,
    *,
    queues: tuple[str, ...] = ALL_QUEUES,
    prefix: str | None = None,
    resources: Resources | None = None,
    mirror: bool = True,
) -> WorkerGroup:
    unknown = set(queues) - set(ALL_QUEUES)
    if unknown:
        raise ValueError(f"unknown queue kinds {sorted(unknown)}; known: {', '.join(ALL_QUEUES)}")
    prefix = prefix or settings.queue_prefix
    resources = resources or await build_resources(settings, pool)
    resources.extra.setdefault("temporal_client", client)  # for activities that look at other runs (batches)
    install(resources)
    writer = MirrorWriter(pool)
    interceptors = worker_interceptors(writer if mirror else None)  # mirror=False: to measure what it costs
    by_queue = activities_by_queue()
    limit = settings.max_concurrent_per_queue
    workers = []
    for kind in queues:
        if kind == WORKFLOW_QUEUE:
            workers.append(
                Worker(
                    client,
                    task_queue=queue_name(prefix, kind),
                    workflows=list(WORKFLOWS),
                    interceptors=interceptors,
                    max_concurrent_workflow_tasks=limit,
                )
            )
        elif by_queue.get(kind):
            workers.append(
                Worker(
                    client,
                    task_queue=queue_name(prefix, kind),
                    activities=by_queue[kind],
                    interceptors=interceptors,
                    max_concurrent_activities=limit,
                )
            )
    return WorkerGroup(workers=workers, writer=writer, resources=resources)


async def main(queues: tuple[str, ...], settings: Settings | None = None) -> None:
    """Serve these queue kinds until SIGINT or SIGTERM, against the servers every command finds.

    TEMPORAL_ADDRESS and DATABASE_URL, else the stack `pageperfect up` runs from the data dir;
    workers never start a server of their own.
    """
    settings = settings or get_settings()
    target = temporal_target(settings)
    runtime = None
    if settings.worker_metrics_port:
        from pageperfect.runtime.metrics import sdk_runtime

        runtime = sdk_runtime(settings.worker_metrics_port, settings.worker_metrics_host)
        log.info(
            "Temporal SDK metrics on http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port
        )
    try:
        async with database(settings, start_embedded=False) as dsn:
            client = await temporal_client(settings, runtime=runtime)
            with contextlib.suppress(Exception):  # a cluster may not let workers register attributes
                await ensure_search_attributes(client)
            pool = await create_pool(dsn)
            run_settings = settings.model_copy(update={"temporal_address": target.address})
            group = await build_workers(client, run_settings, pool, queues=queues)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            group.start()
            log.info("workers running for %s on %s", ", ".join(queues), target.address)
            await stop.wait()
            await group.shutdown()
            await pool.close()
    except BackendError as err:
        raise SystemExit(f"worker: {err}") from None


def cli() -> None:
    parser = argparse.ArgumentParser(description="Run PagePerfect workers for the stage table's task queues.")
    parser.add_argument(
        "--queues",
        default=",".join(ALL_QUEUES),
        help=f"comma-separated queue kinds to serve (default all: {','.join(ALL_QUEUES)})",
    )
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(tuple(q.strip() for q in args.queues.split(",") if q.strip())))
