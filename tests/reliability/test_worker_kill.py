"""A worker process SIGKILLed in the middle of each stage: the job still completes, once.

The workers run as `python worker.py` in a child process. Each case makes one stage
of one job stall at a known point (a crawl provider that does not answer, an
embedding or chat request that hangs, a table lock the stage's write waits on),
waits until the mirror shows that stage `processing` and no other stage of the job
running (the crawl branch and keyword_clustering run side by side), SIGKILLs the worker, lifts
the stall and starts a new worker. Temporal notices the lost attempt when its
heartbeat (or, for submit_crawl, start-to-close) timeout expires and runs the stage
again on the new worker. Jobs are started with PAGEPERFECT_STAGE_TIMEOUT_SCALE 0.1
so that this takes seconds instead of minutes.

"No duplicate" means, for each killed job:
- its result names exactly one artifact per stage (crawl, segment set, cluster set,
  gap report, draft set), each owned by the job and complete (a fetched crawl, the
  segments, clusters, gaps and drafts its summary counts);
- each artifact table holds exactly one row for the job, and stage_outputs one row
  per stage. Every stall here sits before the stage's write, so the killed attempt
  wrote nothing; an attempt killed after its write would leave one extra row that
  nothing references, which is the only duplicate the design allows;
- the mirror agrees with Temporal history (reconcile reports no difference), with
  attempt_count 2 for the killed stage and 1 for every other stage.
"""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from pageperfect.models import KeywordRow
from pageperfect.services.intake import JobRequest, submit_job
from pageperfect.services.reconcile import reconcile
from tests.helpers.data import demo_keywords
from tests.helpers.polling import until
from tests.helpers.settings import DEMO, make_settings
from tests.openai_server import OpenAIStub
from tests.reliability.conftest import WorkerProcess
from tests.reliability.crawl_provider import CrawlProviderStub
from pageperfect.stages import STAGES

TIMEOUT_SCALE = 0.1  # heartbeats 3-6 s, submit_crawl's start-to-close 9 s
HANG = 120.0  # longer than any case needs: the killed attempt never gets its answer
ARTIFACTS = {  # stage -> table its artifact row is in (wait_crawl completes the crawl row of submit_crawl)
    "submit_crawl": "crawls",
    "segment_embed": "segment_sets",
    "keyword_clustering": "cluster_sets",
    "gap_analysis": "gap_reports",
    "rewrite_draft": "draft_sets",
}


class KillRig:
    """The worker process and the stubs it talks to, shared by the six cases."""

    def __init__(self, env: dict[str, str], log_dir, provider: CrawlProviderStub, ai: OpenAIStub):
        self.env, self.log_dir, self.provider, self.ai = env, log_dir, provider, ai
        self.worker: WorkerProcess | None = None
        self.started = 0

    async def start_worker(self) -> None:
        self.started += 1
        self.worker = await WorkerProcess(self.env, self.log_dir / f"worker-{self.started}.log").start()

    async def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill()
        await self.worker.wait()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(postgres_dsn, temporal_server, tmp_path_factory):
    provider = CrawlProviderStub().start()
    with OpenAIStub() as ai:
        env = {
            "TEMPORAL_ADDRESS": temporal_server.address,
            "DATABASE_URL": postgres_dsn,
            "PAGEPERFECT_QUEUE_PREFIX": f"k{uuid.uuid4().hex[:10]}",
            "PAGEPERFECT_CRAWL_PROVIDER": "scraperapi",
            "PAGEPERFECT_SCRAPER_BASE_URL": provider.base_url,
            "PAGEPERFECT_SCRAPER_API_KEY": provider.api_key,
            "OPENAI_API_KEY": "sk-kill-test",
            "OPENAI_BASE_URL": ai.base_url,
            "LOG_LEVEL": "WARNING",
        }
        rig = KillRig(env, tmp_path_factory.mktemp("kill"), provider, ai)
        await rig.start_worker()
        yield rig
        if rig.worker is not None:
            await rig.worker.stop()
    provider.stop()


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
async def test_worker_killed_during_stage(stage, rig, pool, client, temporal_server):
    token = uuid.uuid4().hex[:12]
    url = f"http://localhost/kill/{stage}-{token}.html"
    # Fresh text in the page and the queries, so that no embedding comes from the cache
    # and each stage sends exactly the requests the fault script expects.
    html = (
        (DEMO / "site" / "index.html")
        .read_text()
        .replace("</h1>", f"</h1><p>Reader group {token} asked about this page.</p>", 1)
    )
    rig.provider.pages[url] = html
    keywords = [KeywordRow(**row) for row in demo_keywords()] + [KeywordRow(query=f"fiddle leaf fig {token}")]

    lock = None
    if stage == "submit_crawl":
        rig.provider.hang_submit(url, HANG)
    elif stage == "wait_crawl":
        rig.provider.hold(url)
    elif stage == "segment_embed":  # the page's segments hold "Reader group <token>", the queries do not
        rig.ai.script_faults("embeddings", [{"hang": HANG, "when": f"Reader group {token}"}])
    elif stage == "keyword_clustering":
        rig.ai.script_faults("embeddings", [{"hang": HANG, "when": f"fiddle leaf fig {token}"}])
    elif stage == "gap_analysis":
        lock = await _lock_table(pool, "gap_reports")  # the stage's write waits on it
    elif stage == "rewrite_draft":
        # Aimed at the drafts' prompt: the coverage judge asks the same endpoint in gap_analysis.
        rig.ai.script_faults("chat/completions", [{"hang": HANG, "when": "You improve one passage"}])

    settings = make_settings(temporal_address=temporal_server.address, stage_timeout_scale=TIMEOUT_SCALE)
    submitted = await submit_job(
        JobRequest(url=url, keywords=keywords, retry_delay_seconds=0.2),
        pool=pool,
        client=client,
        settings=settings,
        queue_prefix=rig.env["PAGEPERFECT_QUEUE_PREFIX"],
    )
    job_id = submitted.job_id
    try:
        await _until_stage_processing(pool, job_id, stage)
        # The crawl branch and keyword_clustering run side by side: kill only once the stage is the
        # job's one running stage, so that the kill costs exactly that stage one attempt.
        await _until_alone(pool, job_id, stage)
        if lock is not None:
            await _until_waiting_on_lock(pool, "gap_reports")
        await rig.kill_worker()
    finally:
        rig.provider.release(url)
        if lock is not None:
            await _unlock(pool, lock)
    await rig.start_worker()

    job = await _until_final(pool, job_id)
    assert job["status"] == "completed", job["error"]
    stages = await _until_mirrored(pool, job_id, stage)
    assert {name: (row["status"], row["attempt_count"]) for name, row in stages.items()} == {
        s.name: ("completed", 2 if s.name == stage else 1) for s in STAGES
    }
    attempts = await pool.fetch(
        "SELECT attempt, status FROM pageperfect_job_events WHERE job_id = $1 AND stage = $2 ORDER BY id", job_id, stage
    )
    assert ("processing", 1) in [(e["status"], e["attempt"]) for e in attempts]
    assert ("completed", 2) in [(e["status"], e["attempt"]) for e in attempts]
    assert ("completed", 1) not in [(e["status"], e["attempt"]) for e in attempts]
    assert await reconcile(pool, client, job_id=job_id, write=False) == []

    await _assert_one_artifact_per_stage(pool, job_id, job["result"])


async def _assert_one_artifact_per_stage(pool, job_id: str, result: dict) -> None:
    summaries = result["stages"]
    for stage, table in ARTIFACTS.items():
        rows = await pool.fetch(f"SELECT id FROM {table} WHERE job_id = $1", job_id)  # noqa: S608 - fixed names
        assert [r["id"] for r in rows] == [summaries[stage]["artifact_id"]], (stage, rows)
    assert summaries["wait_crawl"]["artifact_id"] == summaries["submit_crawl"]["artifact_id"]
    crawl = await pool.fetchrow(
        "SELECT status, html FROM crawls WHERE id = $1", summaries["submit_crawl"]["artifact_id"]
    )
    assert crawl["status"] == "fetched" and crawl["html"]
    counted = {
        "segment_embed": ("SELECT count(*) FROM segments WHERE segment_set_id = $1", "segments"),
        "keyword_clustering": ("SELECT count(*) FROM clusters WHERE cluster_set_id = $1", "clusters"),
        "rewrite_draft": ("SELECT count(*) FROM drafts WHERE draft_set_id = $1", "drafts"),
    }
    for stage, (sql, key) in counted.items():
        assert await pool.fetchval(sql, summaries[stage]["artifact_id"]) == summaries[stage]["counts"][key] > 0
    gaps = await pool.fetchval(
        "SELECT count(*) FROM gaps WHERE gap_report_id = $1 AND has_gap", summaries["gap_analysis"]["artifact_id"]
    )
    assert gaps == summaries["gap_analysis"]["counts"]["gaps"] > 0
    outputs = await pool.fetch(
        "SELECT stage, count(*) AS n FROM stage_outputs WHERE job_id = $1 GROUP BY stage", job_id
    )
    assert {r["stage"]: r["n"] for r in outputs} == {s.name: 1 for s in STAGES}


async def _lock_table(pool, table: str):
    conn = await pool.acquire()
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")  # reads pass, writes wait
    return conn, transaction


async def _unlock(pool, lock) -> None:
    conn, transaction = lock
    await transaction.rollback()
    await pool.release(conn)


async def _until_stage_processing(pool, job_id: str, stage: str) -> None:
    async def probe():
        return await pool.fetchval(
            """SELECT true FROM pageperfect_job_stages
               WHERE job_id = $1 AND stage = $2 AND status = 'processing' AND attempt_count = 1""",
            job_id,
            stage,
        )

    await until(probe, what=f"{stage} to be processing")


def _beside(stage: str) -> set[str]:
    """The stages that may run at the same time as `stage`: neither before nor after it in the stage table's graph."""
    before: dict[str, set[str]] = {}
    for s in STAGES:
        before[s.name] = set(s.after).union(*(before[name] for name in s.after))
    return {s.name for s in STAGES if s.name != stage and s.name not in before[stage] and stage not in before[s.name]}


async def _until_alone(pool, job_id: str, stage: str) -> None:
    async def probe():
        return await pool.fetchval(
            """SELECT count(*) = 0 FROM pageperfect_job_stages
               WHERE job_id = $1 AND stage = ANY($2::text[]) AND status <> 'completed'""",
            job_id,
            list(_beside(stage)),
        )

    await until(probe, what=f"the stages beside {stage} to complete")


async def _until_waiting_on_lock(pool, table: str) -> None:
    async def probe():
        return await pool.fetchval(
            """SELECT true FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query ILIKE $1 LIMIT 1""",
            f"%INSERT INTO {table}%",
        )

    await until(probe, what=f"a write to {table} waiting on the lock")


async def _until_final(pool, job_id: str, timeout: float = 90.0):
    async def probe():
        row = await pool.fetchrow("SELECT * FROM pageperfect_jobs WHERE id = $1", job_id)
        return row if row["status"] in ("completed", "failed", "cancelled") else None

    return await until(probe, what=f"job {job_id} to end", timeout=timeout)


async def _until_mirrored(pool, job_id: str, stage: str) -> dict:
    """The stage rows once the new worker's mirror writer has caught up with the job's end."""

    async def probe():
        rows = await pool.fetch("SELECT * FROM pageperfect_job_stages WHERE job_id = $1", job_id)
        done = len(rows) == len(STAGES) and all(r["status"] == "completed" for r in rows)
        return {r["stage"]: r for r in rows} if done else None

    try:
        return await until(probe, what="the mirror to show every stage completed", timeout=20)
    except AssertionError:
        rows = await pool.fetch(
            "SELECT stage, status, attempt_count FROM pageperfect_job_stages WHERE job_id = $1", job_id
        )
        raise AssertionError(f"mirror rows after the kill in {stage}: {[tuple(r) for r in rows]}") from None
