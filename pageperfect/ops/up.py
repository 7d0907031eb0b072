"""The whole stack in one process tree: Temporal dev server, Postgres, migrations, workers, API.

`pageperfect up` runs it in the foreground; `pageperfect demo` runs it and a job on
the sample site. Either stops everything cleanly on Ctrl-C or SIGTERM. While it runs, the other
commands find its servers through DATA_DIR/stack.json (pageperfect.runtime.backends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from collections.abc import AsyncIterator

import uvicorn

from db.migrate import migrate_dsn
from db.pool import create_pool
from pageperfect.runtime.backends import StackRecord, clear_stack, record_stack
from pageperfect.services.apikeys import stack_key
from pageperfect.settings import Settings
from pageperfect.runtime.stack import (
    EmbeddedPostgres,
    TemporalDevServer,
    port_in_use,
    quiet_platformdirs_warning,
    wait_for_port,
)
from pageperfect.runtime.temporal import (
    DEFAULT_RETENTION_DAYS,
    connect,
    ensure_search_attributes,
    plain_grpc,
    set_retention,
)

log = logging.getLogger("pageperfect.up")


@dataclass
class RunningStack:
    settings: Settings
    temporal_address: str
    ui_url: str | None
    dsn: str
    api_url: str
    embedded_postgres: bool
    embedded_temporal: bool
    client: object
    pool: object
    workers: object
    api_key: str = ""
    api_key_source: str = ""
    metrics_url: str | None = None  # the workers' Temporal SDK metrics, when a port is set
    retention: timedelta | None = None  # how long Temporal keeps closed runs, where `up` set it

    @property
    def docs_url(self) -> str:
        return f"{self.api_url}/docs"


@asynccontextmanager
async def running_stack(settings: Settings) -> AsyncIterator[RunningStack]:
    from api.app import create_app
    from pageperfect.runtime.worker import build_workers

    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    wanted = {"--api-port": settings.api_port}
    if not settings.temporal_address:
        wanted.update({"--temporal-port": settings.temporal_port, "--ui-port": settings.ui_port})
    if settings.worker_metrics_port:
        wanted["--metrics-port"] = settings.worker_metrics_port
    for option, port in wanted.items():
        if port_in_use(port):
            raise RuntimeError(f"port {port} is already in use; choose another with {option}")
    async with contextlib.AsyncExitStack() as stack:
        dsn = settings.database_dsn
        if not dsn:
            quiet_platformdirs_warning()
            pg = await asyncio.to_thread(EmbeddedPostgres(data_dir / "postgres").start)
            stack.callback(pg.stop)
            dsn = pg.dsn
        await migrate_dsn(dsn)

        address, ui_url = settings.temporal_address, None
        if not address:
            server = TemporalDevServer(
                port=settings.temporal_port,
                ui_port=settings.ui_port,
                db_file=data_dir / "temporal.db",
                log_file=data_dir / "temporal.log",
            )
            await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            address, ui_url = server.address, server.ui_url
        # The embedded dev server speaks plain gRPC, whatever TLS settings an existing cluster would need.
        connect_settings = settings if settings.temporal_address else plain_grpc(settings)
        runtime = None
        if settings.worker_metrics_port:  # the Temporal SDK's Prometheus series, for workers and client
            from pageperfect.runtime.metrics import sdk_runtime

            runtime = sdk_runtime(settings.worker_metrics_port, settings.worker_metrics_host)
        client = await connect(address, settings.temporal_namespace, settings=connect_settings, runtime=runtime)
        with contextlib.suppress(Exception):  # a managed cluster may refuse; the dev server has them already
            await ensure_search_attributes(client)
        # How long closed runs stay: set on the embedded server, on a cluster only when asked to.
        retention = None
        wanted_days = settings.temporal_retention_days or (
            None if settings.temporal_address else DEFAULT_RETENTION_DAYS
        )
        if wanted_days:
            retention = await set_retention(client, wanted_days)

        pool = await create_pool(dsn)
        stack.push_async_callback(pool.close)
        run_settings = settings.model_copy(update={"temporal_address": address})
        group = await build_workers(client, run_settings, pool)
        group.start()
        stack.push_async_callback(group.shutdown)

        api_key, api_key_source = await stack_key(pool, run_settings)
        app = create_app(run_settings, pool=pool, client=client)
        server_api = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning"))
        api_task = asyncio.create_task(server_api.serve())

        async def stop_api() -> None:
            server_api.should_exit = True
            with contextlib.suppress(BaseException):
                await api_task

        stack.push_async_callback(stop_api)
        while not server_api.started:
            if api_task.done():
                api_task.result()
                raise RuntimeError(f"the API did not start on port {settings.api_port}")
            await asyncio.sleep(0.05)
        await asyncio.to_thread(wait_for_port, "127.0.0.1", settings.api_port, 10)
        # The other commands run from this data dir find this stack by this record (no secret in it).
        api_url = f"http://127.0.0.1:{settings.api_port}"
        record_stack(
            data_dir,
            StackRecord(
                pid=os.getpid(),
                temporal_address=address,
                embedded_temporal=not settings.temporal_address,
                embedded_postgres=not settings.database_dsn,
                api_url=api_url,
                ui_url=ui_url,
            ),
        )
        stack.callback(clear_stack, data_dir, os.getpid())
        yield RunningStack(
            settings=run_settings,
            temporal_address=address,
            ui_url=ui_url,
            dsn=dsn,
            api_url=api_url,
            embedded_postgres=not settings.database_dsn,
            embedded_temporal=not settings.temporal_address,
            client=client,
            pool=pool,
            workers=group,
            api_key=api_key,
            api_key_source=api_key_source,
            metrics_url=(
                f"http://127.0.0.1:{settings.worker_metrics_port}/metrics" if settings.worker_metrics_port else None
            ),
            retention=retention,
        )
