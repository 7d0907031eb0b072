"""Orchestration overhead: a job through Temporal (mirror on) vs the same stage functions in one process.

Single job: submit to result, pipeline vs monolith, medians of alternating runs
after one warm-up of each (the warm-up fills the embedding cache both then use).
The bare workflow's latency one at a time is shown too: the floor of six hops.
And, for information, the same single job on a page the site answers after 0.5 s: the
pipeline clusters the queries while the crawl waits, the monolith calls the stages in turn.
Throughput: N jobs at once through the pipeline vs N bare six-no-op-activity
workflows on the same server; the monolith's own throughput (as many at once as
a worker queue allows) is shown for scale. Every job has its own page URL.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid

from bench.bare_workflow import BARE_WORKFLOW, bare_workers
from bench.common import cores_used, figure, ratio, title
from bench.fixtures import article_html, keyword_rows
from bench.jobs import Finished, many, monolith_job, pipeline_job
from pageperfect.models import JobInput
from pageperfect.stages import WORKFLOW_QUEUE, queue_name

NAME = "orchestration"
NEEDS_STACK = True
SECTIONS = 17  # about 50 segments once extracted
QUERIES = 300
SINGLE_TARGET = 1.3
THROUGHPUT_TARGET = 0.7
SLOW_PAGE_SECONDS = 0.5  # informational: a site that takes this long to answer


def _stage_work_ms(finished: Finished) -> float:
    return sum(s.get("duration_ms", 0) for s in finished.result["stages"].values())


async def bare_runs(stack, count: int, limit: int, repeats: int) -> tuple[list[float], float]:
    """Seconds of `repeats` bare workflows one at a time, then the wall time of `count` at once."""
    prefix = f"bare{uuid.uuid4().hex[:8]}"
    workers = bare_workers(stack.client, prefix, limit)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:

        async def one(i: int) -> None:
            job = JobInput(
                job_id=str(uuid.uuid4()),
                page_id=10_000_000 + i,
                url=stack.site.url("bare", str(i)),
                queue_prefix=prefix,
            )
            handle = await stack.client.start_workflow(
                BARE_WORKFLOW, job, id=f"{prefix}-{i}", task_queue=queue_name(prefix, WORKFLOW_QUEUE)
            )
            await handle.result()

        await one(-1)  # warm-up: workers polling, sandbox loaded
        singles = [await many(1, lambda _: one(-2 - i)) for i in range(repeats)]
        return singles, await many(count, one)
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(quick: bool, stack) -> None:
    keywords = keyword_rows(QUERIES)
    stack.site.add("orch", article_html(sections=SECTIONS))
    run_id = uuid.uuid4().hex[:6]

    def url(name: str) -> str:
        return stack.site.url("orch", f"{run_id}-{name}")

    stack.site.add("orch-slow", article_html(sections=SECTIONS), delay=SLOW_PAGE_SECONDS)

    def slow_url(name: str) -> str:
        return stack.site.url("orch-slow", f"{run_id}-{name}")

    repeats = 1 if quick else 5
    count = 10 if quick else 200
    title(f"orchestration: one job of ~50 segments and {QUERIES} queries; then {count} jobs at once")
    # The bare baseline first: the dev server's SQLite store grows with every run and slows a little,
    # so the baseline gets the fresher server.
    limit = stack.settings().max_concurrent_per_queue
    bare_singles, bare_seconds = await bare_runs(stack, count, limit, repeats)
    async with stack.workers() as (prefix, settings, group):
        await pipeline_job(stack, prefix, settings, url("warm-pipeline"), keywords)
        await monolith_job(stack, settings, url("warm-monolith"), keywords)
        pipeline, monolith = [], []
        for i in range(repeats):
            monolith.append(await monolith_job(stack, settings, url(f"mono-{i}"), keywords))
            pipeline.append(await pipeline_job(stack, prefix, settings, url(f"pipe-{i}"), keywords))
        # Informational: the same job on a page that takes SLOW_PAGE_SECONDS to answer, where the
        # query clustering runs while the crawl waits (the monolith calls the stages in turn).
        slow_pipeline, slow_monolith = [], []
        for i in range(repeats):
            slow_monolith.append(await monolith_job(stack, settings, slow_url(f"mono-{i}"), keywords))
            slow_pipeline.append(await pipeline_job(stack, prefix, settings, slow_url(f"pipe-{i}"), keywords))
        before = stack.cpu_seconds()
        pipeline_seconds = await many(count, lambda i: pipeline_job(stack, prefix, settings, url(f"tp-{i}"), keywords))
        pipeline_cores = cores_used(before, stack.cpu_seconds(), pipeline_seconds)
        monolith_seconds = await many(
            count, lambda i: monolith_job(stack, settings, url(f"tm-{i}"), keywords), limit=limit
        )
        await group.writer.flush()

    pipe_ms = statistics.median(f.seconds for f in pipeline) * 1000
    mono_ms = statistics.median(f.seconds for f in monolith) * 1000
    segments = pipeline[0].result["stages"]["segment_embed"]["counts"]["segments"]
    clusters = pipeline[0].result["stages"]["keyword_clustering"]["counts"]["clusters"]
    figure("page", f"{segments:.0f} segments, {QUERIES} queries -> {clusters:.0f} clusters")
    figure(
        "pipeline, one job",
        f"{pipe_ms:8.0f} ms median of {repeats} "
        f"(work inside the stages {statistics.median(map(_stage_work_ms, pipeline)):.0f} ms)",
    )
    figure(
        "monolith, one job",
        f"{mono_ms:8.0f} ms median of {repeats} "
        f"(work inside the stages {statistics.median(map(_stage_work_ms, monolith)):.0f} ms)",
    )
    figure("bare 6-activity workflow, one", f"{statistics.median(bare_singles) * 1000:8.0f} ms median of {repeats}")
    slow_pipe_ms = statistics.median(f.seconds for f in slow_pipeline) * 1000
    slow_mono_ms = statistics.median(f.seconds for f in slow_monolith) * 1000
    figure(
        f"page answering in {SLOW_PAGE_SECONDS:g} s: pipeline / monolith",
        f"{slow_pipe_ms:8.0f} ms / {slow_mono_ms:.0f} ms median of {repeats}",
    )
    figure(f"pipeline, {count} at once", f"{pipeline_seconds:8.1f} s = {count / pipeline_seconds:6.2f} jobs/s")
    figure(f"pipeline, {count} at once, cores busy", pipeline_cores)
    figure(
        f"bare 6-activity workflow, {count} at once", f"{bare_seconds:8.1f} s = {count / bare_seconds:6.2f} workflows/s"
    )
    figure(
        f"monolith, {count} jobs, {limit} at a time",
        f"{monolith_seconds:8.1f} s = {count / monolith_seconds:6.2f} jobs/s",
    )
    single = pipe_ms / mono_ms
    ratio("orchestration.single_job_vs_monolith", single, f"<= {SINGLE_TARGET}", single <= SINGLE_TARGET)
    slow = slow_pipe_ms / slow_mono_ms
    ratio(
        "orchestration.single_job_vs_monolith_slow_page",
        slow,
        f"<= {SINGLE_TARGET} (informational: the site takes {SLOW_PAGE_SECONDS:g} s; not the issue's fixture)",
        slow <= SINGLE_TARGET,
    )
    share = bare_seconds / pipeline_seconds
    ratio(f"orchestration.throughput_vs_bare_{count}", share, f">= {THROUGHPUT_TARGET}", share >= THROUGHPUT_TARGET)
