"""Lookups every route module shares."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import asyncpg
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowExecutionStatus

from db import queries
from pageperfect.models import BatchStatus


async def job_or_404(pool: asyncpg.Pool, job_id: uuid.UUID) -> asyncpg.Record:
    job = await queries.get_job(pool, str(job_id))
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


def intake_context(request: Request) -> dict[str, Any]:
    """What the batch and site intakes take from the app: its pool, its Temporal client, settings, queue prefix."""
    state = request.app.state
    return {"pool": state.pool, "client": state.client, "settings": state.settings, "queue_prefix": state.queue_prefix}


class Started(Protocol):
    workflow_id: str
    run_id: str
    pages: int


def accepted(
    request: Request, ids: dict[str, str], created: Started, route: str, extra: dict[str, Any] | None = None
) -> JSONResponse:
    """The 202 of a started batch or site: its ids, its run, its pages, and where to follow it (`route`, whose
    path parameter is the first of `ids`)."""
    key = next(iter(ids))
    return JSONResponse(
        {
            **ids,
            "workflow_id": created.workflow_id,
            "run_id": created.run_id,
            "pages": created.pages,
            **(extra or {}),
            "status": BatchStatus.RUNNING,
            "status_url": str(request.url_for(route, **{key: ids[key]})),
        },
        status_code=202,
    )


async def cancel_running(request: Request, kind: str, row_id: uuid.UUID, row: asyncpg.Record | None) -> dict[str, str]:
    """Cancel the workflow of a running batch or site (`row`, its table's row): 404 when there is none, 409
    when it has ended; the workflow's latest run is the one cancelled (a batch continues as new)."""
    if row is None:
        raise HTTPException(404, f"no {kind} {row_id}")
    if row["status"] != BatchStatus.RUNNING:
        raise HTTPException(409, f"{kind} {row_id} is already {row['status']}")
    handle = request.app.state.client.get_workflow_handle(row["workflow_id"])
    if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
        raise HTTPException(409, f"{kind} {row_id} is no longer running")
    await handle.cancel()
    return {f"{kind}_id": str(row_id), "status": "cancelling"}
