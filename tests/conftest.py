"""Session fixtures: one real Temporal dev server and one real Postgres per test session.

Each test that runs jobs gets its own task-queue prefix, so tests never take each
other's tasks. DATABASE_URL, where set, is used instead of the embedded Postgres.
What tests share besides fixtures lives in tests/helpers/.

Layers: `slow` marks the reliability suites, the worker-kill tests, the benchmark smoke, the
few tests that spawn many interpreters and the few whose point is a large input; every test
under tests/integration/ is marked `integration` here (each runs the whole pipeline: API,
workers, Temporal, Postgres). The fast layer is the rest: `./dev.sh test -m "not slow and not
integration"`, about 630 tests (README, Tests, has its measured time). That command runs in
one pytest-xdist worker per core (`-n 0` for one process, `-n N` for N) and does not import
tests/integration/ or the slow folders, whose every test it would deselect. Each worker has
a session of its own: its own Temporal dev server, Postgres (a database of its own under
DATABASE_URL), temporary folder and ports, and an equal share of the cores for BLAS.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from db.migrate import migrate_dsn
from db.pool import create_pool
from pageperfect.runtime.stack import (
    EmbeddedPostgres,
    TemporalDevServer,
    free_port,
    quiet_platformdirs_warning,
)
from pageperfect.runtime.temporal import connect
from tests.helpers.pipeline import Pipeline, Pipelines
from tests.helpers.settings import DEMO, make_settings
from tests.helpers.site import Site, SiteHandler

TESTS = Path(__file__).parent
INTEGRATION = TESTS / "integration"
SLOW = (TESTS / "reliability", TESTS / "test_bench_smoke.py")  # and single tests marked where they are
FAST_LAYER = "not slow and not integration"  # the quick command's -m


def _fast_layer(config: pytest.Config) -> bool:
    return " ".join((config.getoption("markexpr") or "").split()) == FAST_LAYER


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The fast layer runs in one xdist worker per core, unless -n (or -p no:xdist, --pdb, a worker) says not."""
    if hasattr(config, "workerinput") or not _fast_layer(config) or not config.pluginmanager.hasplugin("xdist"):
        return
    if config.getoption("numprocesses") is None and not config.getoption("usepdb") and _cores() > 1:
        config.option.numprocesses = _cores()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Each xdist worker's BLAS gets its share of the cores: OpenBLAS threads busy-wait, so more of them than
    # cores burn CPU for nothing (tests/unit/test_minilm.py: 56 s of CPU with a thread per core beside other
    # work, 21 s with one). Set before the workers start (they inherit it); numpy reads it when it loads.
    workers = config.getoption("numprocesses", None) if not hasattr(config, "workerinput") else None
    if isinstance(workers, int) and workers > 0:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(name, str(max(1, _cores() // workers)))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The fast layer does not import the folders whose every test it deselects."""
    if _fast_layer(config) and (collection_path == INTEGRATION or collection_path in SLOW):
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path)
        if INTEGRATION in path.parents:
            item.add_marker(pytest.mark.integration)
        if any(slow == path or slow in path.parents for slow in SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tmp_root():
    with tempfile.TemporaryDirectory(prefix="pageperfect-tests-") as root:
        yield Path(root)


@pytest.fixture(scope="session")
def temporal_server(tmp_root):
    for attempt in range(3):
        server = TemporalDevServer(
            port=free_port(),
            ui_port=free_port(),
            db_file=tmp_root / f"temporal-{attempt}.db",
            log_file=tmp_root / "temporal.log",
        )
        try:
            server.start()
            break
        except RuntimeError:  # it exited at start: a port taken between free_port() and its bind, by another worker
            if attempt == 2:
                raise
    yield server
    server.stop()


async def _worker_database(dsn: str, worker: str) -> str:
    """A database of this xdist worker's own on DATABASE_URL's server (created once, kept like DATABASE_URL's)."""
    admin = await asyncpg.connect(dsn)
    try:
        name = f"{await admin.fetchval('SELECT current_database()')}_{worker}"
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(dsn)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in ("dbname", "database")])
    return urlunsplit(parts._replace(path=f"/{name}", query=query))


@pytest.fixture(scope="session")
def postgres_dsn(tmp_root):
    if os.environ.get("DATABASE_URL"):
        dsn, worker = os.environ["DATABASE_URL"], os.environ.get("PYTEST_XDIST_WORKER")
        if worker:  # the workers' tests must not see each other's rows
            dsn = _off_the_loop(_worker_database(dsn, worker))
        yield dsn
        return
    quiet_platformdirs_warning()
    pg = EmbeddedPostgres(tmp_root / "pg").start()
    _off_the_loop(_without_fsync(pg.dsn))
    yield pg.dsn
    pg.stop()


def _off_the_loop(coro):
    """Runs coro to its end in a thread of its own, off the session's event loop (a sync fixture may not use it)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coro).result()


async def _without_fsync(dsn: str) -> None:
    """The session's throwaway cluster writes without fsync, at commits and at its shutdown checkpoint.

    What survives a power cut is not what these tests check (the outage tests stop and start a Postgres of
    their own); the writes, the transactions and what each reader sees are as before.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER SYSTEM SET fsync = off")
        await conn.execute("ALTER SYSTEM SET full_page_writes = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(postgres_dsn):
    await migrate_dsn(postgres_dsn)
    pool = await create_pool(postgres_dsn, max_size=20)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(temporal_server):
    client = await connect(temporal_server.address, settings=make_settings())
    yield client


@pytest.fixture(scope="session")
def site():
    """A site on loopback that tests add pages to; the demo site is there from the start."""
    handler = type("Handler", (SiteHandler,), {"routes": {}, "hits": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site = Site(f"http://127.0.0.1:{server.server_address[1]}", handler)
    for page in (DEMO / "site").glob("*.html"):
        site.add("/" + page.name, page.read_bytes())
    yield site
    server.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def pipeline_factory(pool, client, temporal_server):
    pipelines = Pipelines()

    async def start(*, wrap_crawler=None, queues=None, **overrides) -> Pipeline:
        """wrap_crawler(inner) -> crawler lets a test put faults in front of the real crawler."""
        from activities.runtime import build_resources

        settings = make_settings(temporal_address=temporal_server.address, **overrides)
        resources = await build_resources(settings, pool)
        if wrap_crawler is not None:
            resources.crawler = wrap_crawler(resources.crawler)
        # With payload_key set, workers and API share a client whose converter encrypts.
        job_client = (
            client if settings.payload_key is None else await connect(temporal_server.address, settings=settings)
        )
        return await pipelines.start(
            settings, f"t{uuid.uuid4().hex[:10]}", pool=pool, client=job_client, resources=resources, queues=queues
        )

    yield start
    await pipelines.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def pipeline(pipeline_factory):
    return await pipeline_factory()
