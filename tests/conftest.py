"""Session fixtures: one real Temporal dev server and one real Postgres per test session.

Each test that runs jobs gets its own task-queue prefix, so tests never take each
other's tasks. DATABASE_URL, where set, is used instead of the embedded Postgres.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn

from db.migrate import migrate_dsn
from db.pool import create_pool
from pageperfect.settings import Settings
from pageperfect.runtime.stack import EmbeddedPostgres, TemporalDevServer, free_port, quiet_platformdirs_warning
from pageperfect.runtime.temporal import connect

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "pageperfect" / "demo"


@pytest.fixture(scope="session")
def tmp_root():
    with tempfile.TemporaryDirectory(prefix="pageperfect-tests-") as root:
        yield Path(root)


@pytest.fixture(scope="session")
def temporal_server(tmp_root):
    server = TemporalDevServer(port=free_port(), ui_port=free_port(), db_file=tmp_root / "temporal.db",
                               log_file=tmp_root / "temporal.log").start()
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


class SiteHandler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, headers, body = self.routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@dataclass
class Site:
    base_url: str
    handler: type[SiteHandler]

    def add(self, path: str, body: str | bytes, *, status: int = 200, content_type: str = "text/html; charset=utf-8",
            headers: dict[str, str] | None = None) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.handler.routes[path] = (status, {"Content-Type": content_type, **(headers or {})}, data)
        return self.base_url + path

    def hits(self, path: str) -> int:
        return self.handler.hits.get(path, 0)


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


TEST_API_KEY = "pp_the-test-suite-key"  # the API key the pipeline's API accepts and pipeline.http sends


async def until(check, *, what: str = "condition", timeout: float = 60, every: float = 0.1):
    """Polls `check()` (async) until it returns something true, and returns that; fails after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)


def make_settings(**overrides) -> Settings:
    values = dict(openai_api_key=None, openai_base_url=None, allowed_hosts="127.0.0.1,localhost",
                  database_url=None, temporal_address=None, api_keys=TEST_API_KEY)
    values.update(overrides)
    return Settings(_env_file=None, **values)


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

    async def wait(self, job_id: str, *, timeout: float = 90, statuses=("completed", "failed", "cancelled")) -> dict:
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

    async def start(self, settings: Settings, prefix: str, *, pool, client, resources, queues=None,
                    http_timeout: float = 30) -> Pipeline:
        from api.app import create_app
        from pageperfect.runtime.worker import build_workers

        group = await build_workers(client, settings, pool, prefix=prefix, resources=resources,
                                    **({"queues": queues} if queues else {}))  # queues: only these kinds
        group.start()
        app = create_app(settings, pool=pool, client=client, queue_prefix=prefix)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="on"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=http_timeout,
                                 headers={"Authorization": f"Bearer {TEST_API_KEY}"})
        self._started.append((group, server, task, http))
        return Pipeline(settings, prefix, f"http://127.0.0.1:{port}", http, group)

    async def stop_all(self) -> None:
        for group, server, task, http in self._started:
            await http.aclose()
            server.should_exit = True
            await task
            await group.shutdown()


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
        job_client = client if settings.payload_key is None else await connect(temporal_server.address, settings=settings)
        return await pipelines.start(settings, f"t{uuid.uuid4().hex[:10]}", pool=pool, client=job_client,
                                     resources=resources, queues=queues)

    yield start
    await pipelines.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def pipeline(pipeline_factory):
    return await pipeline_factory()
