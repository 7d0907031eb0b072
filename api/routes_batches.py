"""Batches: many pages, one job each, a bounded number running at once."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from pageperfect.models import BatchStatus, JobOptions
from pageperfect.services.batch_intake import BatchRequest, batch_status, create_batch
from api.lookup import accepted, intake_context, cancel_running
from db import queries
from pageperfect.sources.gsc import GscFormatError, parse_page_query_csv
from pageperfect.messages import DEFAULT_CONCURRENCY, MAX_CONCURRENCY

router = APIRouter()


async def _start(request: Request, body: BatchRequest, source: str) -> JSONResponse:
    created = await create_batch(body, **intake_context(request), source=source)
    return accepted(
        request, {"batch_id": created.batch_id}, created, "get_batch", {"duplicates_dropped": created.duplicates}
    )


@router.post("/v1/batches", status_code=202, summary="Start one job per page, a few at a time")
async def create_batch_route(body: BatchRequest, request: Request) -> JSONResponse:
    return await _start(request, body, "api")


@router.post("/v1/batches/csv", status_code=202, summary="Start a batch from a page-and-query CSV")
async def create_batch_from_csv(
    request: Request,
    file: UploadFile = File(..., description="CSV with the columns page, query, clicks, impressions, ctr, position"),
    concurrency: int = Form(default=DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY),
    webhook_url: str | None = Form(default=None, max_length=2048),
    options: str | None = Form(
        default=None,
        max_length=20_000,
        description='What every job shares, as JSON: {"skip_steps": [], "force_update": '
        'false, "priority": 0, "max_attempts": 3, "options": {"top_gaps": 5}}',
    ),
) -> JSONResponse:
    try:
        shared = JobOptions.model_validate_json(options) if options else JobOptions()
    except ValidationError as err:
        first = err.errors()[0]
        raise HTTPException(422, f"options: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from err
    try:
        grouped = parse_page_query_csv(await file.read(), source=file.filename or "upload.csv")
    except GscFormatError as err:  # names the file, the line and the column
        raise HTTPException(422, str(err)) from err
    if not grouped:
        raise HTTPException(422, f"{file.filename or 'the file'} has no rows")
    try:
        body = BatchRequest(
            urls=list(grouped),
            keywords=grouped,
            concurrency=concurrency,
            webhook_url=webhook_url,
            **shared.model_dump(),
        )
    except ValidationError as err:
        first = err.errors()[0]
        raise HTTPException(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from err
    return await _start(request, body, "csv")


@router.get("/v1/batches", summary="Batches, newest first")
async def list_batches(request: Request, limit: int = Query(default=50, ge=1, le=500)) -> list[dict]:
    pool = request.app.state.pool
    return [
        jsonable_encoder(await batch_status(pool, str(row["id"]), items=False))
        for row in await queries.list_batches(pool, limit)
    ]


@router.get("/v1/batches/{batch_id}", name="get_batch", summary="A batch: its pages counted by status")
async def get_batch(
    batch_id: uuid.UUID, request: Request, pages: bool = Query(default=True, description="List every page with its job")
) -> dict:
    state = request.app.state
    body = await batch_status(state.pool, str(batch_id), items=pages)
    if body is None:
        raise HTTPException(404, f"no batch {batch_id}")
    if body["status"] == BatchStatus.RUNNING and await _ended_outside(state, body):
        body = await batch_status(state.pool, str(batch_id), items=pages)
    return jsonable_encoder(body)


async def _ended_outside(state, body: dict) -> bool:
    """A batch whose workflow was terminated (or failed) never closed its row: close it as failed now."""
    try:
        described = await state.client.get_workflow_handle(body["workflow_id"]).describe()  # its latest run
    except RPCError:
        return False  # Temporal away, or the run not visible yet: the row is the answer for now
    if described.status in (
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.TIMED_OUT,
    ):
        await queries.close_batch(state.pool, body["batch_id"], BatchStatus.FAILED)
        return True
    return False


@router.post("/v1/batches/{batch_id}/cancel", status_code=202, summary="Cancel a batch and the jobs it started")
async def cancel_batch(batch_id: uuid.UUID, request: Request) -> dict:
    return await cancel_running(
        request, "batch", batch_id, await queries.get_batch(request.app.state.pool, str(batch_id))
    )
