"""Run a dead-lettered job again, reusing the stages it completed."""

from __future__ import annotations

import uuid

import asyncpg
from temporalio.client import Client

from pageperfect.services.intake import Submitted, start_job
from db import queries
from pageperfect.models import JobInput

# Long enough that every stage the failed job completed is reused, however old.
REDRIVE_REUSE_WINDOW = 365 * 24 * 3600.0


async def redrive(dead_letter_id: int, *, pool: asyncpg.Pool, client: Client) -> Submitted:
    letter = await queries.get_dead_letter(pool, dead_letter_id)
    if letter is None:
        raise LookupError(f"no dead letter {dead_letter_id}")
    original = JobInput.model_validate(letter["payload"])
    job = original.model_copy(
        update={
            "job_id": str(uuid.uuid4()),
            "force_update": False,
            "reuse_window_seconds": REDRIVE_REUSE_WINDOW,
        }
    )
    old = await queries.get_job(pool, str(letter["job_id"]))
    payload = dict(old["payload"]) if old else {}
    payload["redrive_of"] = str(letter["job_id"])
    submitted = await start_job(job, payload, pool=pool, client=client)
    await queries.mark_redriven(pool, dead_letter_id, submitted.job_id)
    return submitted
