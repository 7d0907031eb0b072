"""Mirror cost: throughput of N jobs with the Postgres mirror on vs off (build_workers(mirror=False)).

Jobs are timed until they complete and, with the mirror on, until its queued
rows are written too, so a backlog left for later does not count as free.
"""

from __future__ import annotations

import uuid

from bench.common import figure, ratio, title
from bench.fixtures import article_html, keyword_rows
from bench.jobs import many, pipeline_job

NAME = "mirror_cost"
NEEDS_STACK = True
QUERIES = 300
TARGET = 0.9


async def _batch(
    stack, mirror: bool, count: int, tag: str, keywords: list[dict]
) -> tuple[float, float, list[str], float]:
    """(seconds to complete, seconds with the mirror flushed, job ids, CPU seconds) for `count` jobs at once."""
    import time

    async with stack.workers(mirror=mirror) as (prefix, settings, group):
        await pipeline_job(stack, prefix, settings, stack.site.url("mirror", f"{tag}-warm"), keywords)
        await group.writer.flush()
        job_ids: list[str] = []

        async def one(i: int) -> None:
            finished = await pipeline_job(stack, prefix, settings, stack.site.url("mirror", f"{tag}-{i}"), keywords)
            job_ids.append(finished.submitted.job_id)

        cpu_before = sum(stack.cpu_seconds().values())
        started = time.perf_counter()
        done = await many(count, one)
        await group.writer.flush()
        flushed = time.perf_counter() - started
        return done, flushed, job_ids, sum(stack.cpu_seconds().values()) - cpu_before


async def run(quick: bool, stack) -> None:
    keywords = keyword_rows(QUERIES)
    stack.site.add("mirror", article_html(sections=17))
    count = 5 if quick else 50
    rounds = 1 if quick else 2
    title(f"mirror cost: {count} jobs at once, mirror off vs on, {rounds} round(s) alternating")
    totals = {False: 0.0, True: 0.0}
    cpu = {False: 0.0, True: 0.0}
    run_id = uuid.uuid4().hex[:6]
    for r in range(rounds):
        for mirror in (False, True):
            done, flushed, job_ids, cpu_seconds = await _batch(
                stack, mirror, count, f"{run_id}-{r}-{int(mirror)}", keywords
            )
            totals[mirror] += flushed
            cpu[mirror] += cpu_seconds
            events = await stack.pool.fetchval(
                "SELECT count(*) FROM pageperfect_job_events WHERE job_id = ANY($1::uuid[])", job_ids
            )
            figure(
                f"round {r + 1}, mirror {'on ' if mirror else 'off'}",
                f"{done:6.2f} s to complete, {flushed:6.2f} s with mirror rows written "
                f"({count / flushed:5.2f} jobs/s; {cpu_seconds / count * 1000:4.0f} ms CPU per job; "
                f"{events} mirror events written)",
            )
    figure(
        "CPU per job, all processes",
        f"mirror off {cpu[False] / (count * rounds) * 1000:.0f} ms, "
        f"on {cpu[True] / (count * rounds) * 1000:.0f} ms "
        f"(bench process, Temporal server, Postgres)",
    )
    share = totals[False] / totals[True]
    ratio("mirror_cost.throughput_on_vs_off", share, f">= {TARGET}", share >= TARGET)
