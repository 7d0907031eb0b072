"""Operator endpoints: change a running job's retry settings, and the job's HTML report."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import ConfigDict, model_validator
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.lookup import job_or_404
from db import queries
from pageperfect.services.report import CSP, load_report, render_report
from pageperfect.messages import TuneRequest
from pageperfect.models import FINAL_STATUSES, JobStatus
from workflows.pageperfect import PagePerfectWorkflow

router = APIRouter()


class TuneBody(TuneRequest):
    """POST /v1/jobs/{id}/tune. The same bounds as a new job's settings."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"max_attempts": 8, "retry_delay_seconds": 30}]}
    )

    @model_validator(mode="after")
    def _asks_for_something(self) -> TuneBody:
        if self.max_attempts is None and self.retry_delay_seconds is None:
            raise ValueError("give max_attempts, retry_delay_seconds or both")
        return self


@router.post("/v1/jobs/{job_id}/tune", summary="Change a running job's retry settings")
async def tune_job(job_id: uuid.UUID, body: TuneBody, request: Request) -> dict:
    """The stages the job has not started yet get the new retry policy; the stages already running keep the
    one they were scheduled with (Temporal fixes an activity's policy when it is scheduled)."""
    pool, client = request.app.state.pool, request.app.state.client
    job = await job_or_404(pool, job_id)
    if job["status"] in FINAL_STATUSES:
        raise HTTPException(409, f"job {job_id} is already {job['status']}")
    handle = client.get_workflow_handle(job["workflow_id"], run_id=job["run_id"])
    try:
        progress = await handle.execute_update(
            PagePerfectWorkflow.tune,
            TuneRequest.model_validate(body.model_dump()),
        )
    except WorkflowUpdateFailedError as err:  # the workflow's validator said no: it has ended meanwhile
        raise HTTPException(409, f"job {job_id} cannot be tuned: {err.cause or err}") from err
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise HTTPException(409, f"job {job_id} is no longer running ({err.message})") from err
        raise
    await queries.set_job_retry_settings(
        pool, str(job_id), max_attempts=progress.max_attempts, retry_delay_seconds=progress.retry_delay_seconds
    )
    return {
        "job_id": str(job_id),
        "status": progress.status,
        "current_stage": progress.current_stage,
        "max_attempts": progress.max_attempts,
        "retry_delay_seconds": progress.retry_delay_seconds,
        "applies_to": [s.stage for s in progress.stages if s.status == "pending"],
        "running": [s.stage for s in progress.stages if s.status == "processing"],
    }


@router.get("/v1/jobs/{job_id}/report", response_class=HTMLResponse, summary="The job's report as an HTML page")
@router.get("/jobs/{job_id}/report", response_class=HTMLResponse, include_in_schema=False)
async def job_report(job_id: uuid.UUID, request: Request) -> HTMLResponse:
    """Self-contained: inline styles and SVG charts, nothing loaded from anywhere."""
    pool = request.app.state.pool
    job = await job_or_404(pool, job_id)
    if job["status"] != JobStatus.COMPLETED:
        raise HTTPException(409, f"job {job_id} is {job['status']}; the report is there once it completes")
    data = await load_report(pool, job)
    page = await asyncio.to_thread(render_report, data)  # the projection is numpy work: off the event loop
    return HTMLResponse(
        page,
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
    )
