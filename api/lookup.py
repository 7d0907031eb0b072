"""Lookups every route module shares."""

from __future__ import annotations

import uuid

import asyncpg
from fastapi import HTTPException

from db import queries


async def job_or_404(pool: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    job = await queries.get_job(pool, str(job_id))
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job
