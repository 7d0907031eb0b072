"""Session fixtures: one real Temporal dev server and one real Postgres per test session.

Each test that runs jobs gets its own task-queue prefix, so tests never take each
other's tasks. DATABASE_URL, where set, is used instead of the embedded Postgres.
What tests share besides fixtures lives in tests/helpers/.

Layers: `slow` marks the reliability suites, the worker-kill tests, the benchmark smoke and
the few tests that spawn many interpreters; every test under tests/integration/ is marked
`integration` here (each runs the whole pipeline: API, workers, Temporal, Postgres). The fast
layer is the rest: `./dev.sh test -m "not slow and not integration"`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path

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
    server = TemporalDevServer(
        port=free_port(), ui_port=free_port(), db_file=tmp_root / "temporal.db", log_file=tmp_root / "temporal.log"
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_dsn(tmp_root):
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    quiet_platformdirs_warning()
    pg = EmbeddedPostgres(tmp_root / "pg").start()
    yield pg.dsn
    pg.stop()


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
