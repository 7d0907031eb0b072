"""What every stage activity does the same way: reuse, inputs from earlier stages, errors, heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, TypeVar
from collections.abc import Awaitable, Callable

import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.runtime import resources
from db import queries
from pageperfect.models import StageInput, StageStatus, StageSummary

T = TypeVar("T")


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def permanent(kind: str, message: str) -> ApplicationError:
    """A failure no retry can fix; its type is in the stage table's non-retryable list."""
    return ApplicationError(message, type=kind, non_retryable=True)


async def reuse_or_run(
    inp: StageInput, stage: str, key: str, run: Callable[[], Awaitable[StageSummary]]
) -> StageSummary:
    """A stage's stored output for the same page and inputs, younger than the window, is reused."""
    pool = resources().pool
    job = inp.job
    if not job.force_update:
        stored = await queries.find_stage_output(
            pool, job.page_id, stage, key, timedelta(seconds=job.reuse_window_seconds)
        )
        if stored is not None:
            summary = StageSummary.model_validate(stored)
            summary.status = StageStatus.REUSED
            summary.info["reused_from_job"] = stored.get("info", {}).get("job_id")
            return summary
    started = time.perf_counter()
    summary = await run()
    summary.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    summary.info["job_id"] = job.job_id
    await queries.record_stage_output(pool, job.page_id, stage, key, job.job_id, summary.model_dump(mode="json"))
    return summary


async def artifact_from(inp: StageInput, stage: str) -> int:
    """The artifact a stage in this one's `after` made for this job; for a stage the job skips, the page's latest.

    Anything else is refused, loudly: a stage reading what is not among its inputs has a wrong `after`
    in the stage table, and must not read another job's output in its place.
    """
    summary = inp.previous.get(stage)
    if summary and summary.get("artifact_id") is not None:
        return int(summary["artifact_id"])
    if stage not in inp.job.skip_steps:
        reader = activity.info().activity_type if activity.in_activity() else "this stage"
        raise permanent(
            "MissingInput",
            f"{reader} reads the output of {stage}, which is not among its inputs: {stage} must be in its `after` "
            "in the stage table (pageperfect/stages.py)",
        )
    stored = await queries.latest_stage_output(resources().pool, inp.job.page_id, stage)
    if stored and stored.get("artifact_id") is not None:
        return int(stored["artifact_id"])
    raise permanent(
        "MissingInput",
        f"{stage} was skipped but no earlier job stored its output for page {inp.job.page_id}; run it once first",
    )


def heartbeat_interval(longest: float = 10.0) -> float:
    """Seconds between heartbeats: at most `longest`, and a third of the activity's heartbeat timeout,
    so that scaled-down timeouts (PAGEPERFECT_STAGE_TIMEOUT_SCALE) never expire on a live worker."""
    if activity.in_activity():
        timeout = activity.info().heartbeat_timeout
        if timeout:
            return max(0.1, min(longest, timeout.total_seconds() / 3))
    return longest


async def heartbeating(work: Awaitable[T]) -> T:
    """Await `work`, heartbeating meanwhile so a cancel or a lost worker is seen.

    The heartbeat says the worker is alive, not that the work is quick: a provider call that
    is slow or hangs is bounded by its own timeout and retries (PAGEPERFECT_PROVIDER_TIMEOUT),
    so Temporal never starts a second attempt beside a live first one.
    """
    every = heartbeat_interval()
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            if activity.in_activity():
                activity.heartbeat()
    finally:
        if not task.done():  # the activity was cancelled: so is the work
            task.cancel()


async def run_cpu(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """CPU work off the event loop, heartbeating meanwhile so a cancel or a lost worker is seen."""
    return await heartbeating(asyncio.to_thread(func, *args, **kwargs))


async def stored_segments(pool: Any, segment_set_id: int) -> tuple[list[SimpleNamespace], np.ndarray]:
    """A stored segment set as the analysis reads it: the segments' fields and their embeddings, in order."""
    rows = await queries.get_segments(pool, segment_set_id)
    segments = [
        SimpleNamespace(
            segment_id=r["segment_id"],
            heading_path=list(r["heading_path"]),
            text=r["text"],
            kind=r["kind"],
            heading_level=r["heading_level"],
        )
        for r in rows
    ]
    return segments, queries.unpack_vectors(r["embedding"] for r in rows)
