"""The real servers the pipeline benchmarks share: a Temporal dev server, an embedded Postgres, a loopback site.

Started once per `python -m bench` run, the way tests/conftest.py starts them;
each benchmark runs its workers on a fresh task-queue prefix.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import AsyncIterator

from bench.fixtures import Site
from db.migrate import migrate_dsn
from db.pool import create_pool
from pageperfect.settings import Settings
from pageperfect.runtime.stack import EmbeddedPostgres, TemporalDevServer, free_port, quiet_platformdirs_warning
from pageperfect.runtime.temporal import connect


BENCH_API_KEY = "pp_bench-key"  # the one key the benchmark's API accepts


def bench_settings(temporal_address: str, **overrides: object) -> Settings:
    """Offline providers (hashing embedder, no LLM), loopback pages allowed, one API key."""
    values: dict = dict(
        openai_api_key=None,
        openai_base_url=None,
        embedding_provider="hashing",  # the jobs' orchestration and storage are measured, not the model
        allowed_hosts="127.0.0.1,localhost",
        database_url=None,
        temporal_address=temporal_address,
        api_keys=BENCH_API_KEY,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Stack:
    root: Path
    temporal: TemporalDevServer
    postgres: EmbeddedPostgres
    pool: object  # asyncpg.Pool
    client: object  # temporalio.client.Client
    site: Site

    @classmethod
    async def start(cls) -> Stack:
        root = Path(tempfile.mkdtemp(prefix="pageperfect-bench-"))
        temporal = TemporalDevServer(
            port=free_port(), ui_port=free_port(), db_file=root / "temporal.db", log_file=root / "temporal.log"
        )
        postgres = EmbeddedPostgres(root / "pg")
        site = None
        try:
            await asyncio.to_thread(temporal.start)
            quiet_platformdirs_warning()
            await asyncio.to_thread(postgres.start)
            await migrate_dsn(postgres.dsn)
            pool = await create_pool(postgres.dsn, max_size=20)
            client = await connect(temporal.address)
            site = Site.start()
        except BaseException:
            temporal.stop()
            postgres.stop()
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(root, temporal, postgres, pool, client, site)

    def settings(self, **overrides: object) -> Settings:
        return bench_settings(self.temporal.address, **overrides)

    @asynccontextmanager
    async def workers(self, *, mirror: bool = True, **overrides: object) -> AsyncIterator[tuple[str, Settings, object]]:
        """The PagePerfect workers on a fresh queue prefix: yields (prefix, settings, group)."""
        from activities.runtime import build_resources
        from pageperfect.runtime.worker import build_workers

        settings = self.settings(**overrides)
        prefix = f"b{uuid.uuid4().hex[:10]}"
        resources = await build_resources(settings, self.pool)
        group = await build_workers(self.client, settings, self.pool, prefix=prefix, resources=resources, mirror=mirror)
        group.start()
        try:
            yield prefix, settings, group
        finally:
            await group.shutdown()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each party: to see where a run's time went on a small machine."""
        import resource

        import psutil

        def tree(pid: int) -> float:
            try:
                root = psutil.Process(pid)
                total = 0.0
                for proc in [root, *root.children(recursive=True)]:
                    times = proc.cpu_times()
                    total += times.user + times.system
                return total
            except psutil.NoSuchProcess:
                return 0.0

        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        postmaster = self.postgres.server.get_postmaster_info().pid  # type: ignore[union-attr]
        return {
            "bench process (API, workers)": me.ru_utime + me.ru_stime,
            "temporal server": tree(self.temporal.process.pid),  # type: ignore[union-attr]
            "postgres": tree(postmaster),
            "load generator": children.ru_utime + children.ru_stime,
        }

    async def stop(self) -> None:
        self.site.stop()
        await self.pool.close()
        await asyncio.to_thread(self.temporal.stop)
        await asyncio.to_thread(self.postgres.stop)
        shutil.rmtree(self.root, ignore_errors=True)
