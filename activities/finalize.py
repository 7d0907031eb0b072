"""finalize_job: the job's final row and, for a failure, its dead letter. Run by the workflow on every ending."""

from __future__ import annotations

from temporalio import activity

from activities.runtime import resources
from db import queries
from pageperfect.models import JobOutcome


@activity.defn(name="finalize_job")
async def finalize_job(outcome: JobOutcome) -> None:
    pool = resources().pool
    if outcome.stage and not outcome.attempt_count:
        outcome.attempt_count = await queries.stage_attempts(pool, outcome.job.job_id, outcome.stage)
    result = {"status": outcome.status, "stages": outcome.summaries}
    async with pool.acquire() as conn:
        await queries.finalize_job(conn, outcome, result)
