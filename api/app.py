"""The FastAPI intake: start jobs, watch them, fetch results, cancel. Docs at /docs."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from api.auth import require_api_key
from api.codec import install_codec
from api.admission import Admission
from pageperfect.services.intake import IntakeError, JobRequest, submit_job
from api.openapi_errors import document_errors
from api.routes_gsc import router as gsc_router
from api.routes_batches import router as batches_router
from api.routes_ops import router as ops_router
from api.routes_stages import router as stages_router
from api.routes_sites import router as sites_router
from api.lookup import job_or_404
from db import queries
from db.pool import create_pool
from pageperfect.runtime.metrics import RequestMetrics, metrics_endpoint
from pageperfect.models import FINAL_STATUSES, JobStatus
from pageperfect.services.results import build_result
from pageperfect.settings import Settings, get_settings
from pageperfect.runtime.temporal import connect

MAX_BODY_BYTES = 8 * 1024 * 1024


class BodyLimit:
    """Refuses bodies over the limit with 413 before reading them into memory."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit)(scope, receive, send)
        seen, exceeded, answered = 0, False, False

        async def limited_receive():
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                exceeded = True
                raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal answered
            if exceeded:  # the app turned the interruption into an answer of its own (a 400): drop it
                return
            answered = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if exceeded and not answered:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit // (1024 * 1024)} MB"}, status_code=413)


def create_app(
    settings: Settings | None = None,
    *,
    pool: asyncpg.Pool | None = None,
    client: Client | None = None,
    queue_prefix: str | None = None,
    migrate_on_start: bool = False,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own_pool = pool is None
        if migrate_on_start:
            from db.migrate import migrate_dsn

            await migrate_dsn(_required(settings.database_dsn, "DATABASE_URL"))
        app.state.pool = pool or await create_pool(_required(settings.database_dsn, "DATABASE_URL"))
        app.state.client = client or await connect(
            _required(settings.temporal_address, "TEMPORAL_ADDRESS"), settings.temporal_namespace, settings=settings
        )
        try:
            yield
        finally:
            if own_pool:
                await app.state.pool.close()

    app = FastAPI(
        title="PagePerfect",
        version="0.1.0",
        description="What a page is missing for the searches that already bring it traffic, and drafts of the fix.",
        lifespan=lifespan,
        dependencies=[Depends(require_api_key(settings))],  # every route but /healthz; see api/auth.py
    )
    app.add_middleware(BodyLimit)
    install_codec(app, settings)
    document_errors(app)  # the shared 4xx/503 answers, in the OpenAPI schema
    app.include_router(gsc_router)
    app.include_router(ops_router)  # tune, report
    app.include_router(batches_router)
    app.include_router(stages_router)
    app.include_router(sites_router)
    app.add_middleware(RequestMetrics)  # outermost: counts every answer, 413s and 401s included
    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.state.settings, app.state.queue_prefix = settings, queue_prefix or settings.queue_prefix
    admission = app.state.admission = Admission(settings.intake_concurrency, settings.intake_max_waiting)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        # The offending input is left out: it may be huge, or NaN, which JSON cannot carry.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in err.errors()
        ][:50]
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"detail": errors, "message": message}, status_code=422)

    @app.exception_handler(IntakeError)
    async def _intake_error(request: Request, err: IntakeError):
        return JSONResponse({"detail": err.message}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RPCError)
    async def _temporal_down(request: Request, err: RPCError):
        return JSONResponse(
            {"detail": f"Temporal is not answering ({err.message}); try again shortly"}, status_code=503
        )

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)  # a pooled connection that died with its server
    @app.exception_handler(asyncpg.InternalClientError)
    @app.exception_handler(ConnectionError)
    @app.exception_handler(OSError)
    async def _postgres_down(request: Request, err: Exception):
        return JSONResponse(
            {"detail": f"Postgres is not answering ({type(err).__name__}); try again shortly"}, status_code=503
        )

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="Start a job for a page",
        responses={
            200: {
                "description": "The page already has a running job: that job, with `existing` true",
                "content": {"application/json": {}},
            },
            404: {"description": "No page with that page_id"},
        },
    )
    async def create_job(body: JobRequest, request: Request) -> JSONResponse:
        async with admission.slot():
            submitted = await submit_job(
                body,
                pool=request.app.state.pool,
                client=request.app.state.client,
                settings=settings,
                queue_prefix=queue_prefix,
            )
        content = {
            "job_id": submitted.job_id,
            "workflow_id": submitted.workflow_id,
            "run_id": submitted.run_id,
            "page_id": submitted.page_id,
            "url": submitted.url,
            "status": submitted.status,
            "existing": submitted.existing,
            "status_url": str(request.url_for("get_job", job_id=submitted.job_id)),
        }
        return JSONResponse(content, status_code=200 if submitted.existing else 202)

    @app.get("/v1/jobs", summary="List jobs")
    async def list_jobs(
        request: Request,
        status: str | None = Query(default=None, max_length=20),
        stage: str | None = Query(default=None, max_length=40),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> list[dict]:
        rows = await queries.list_jobs(request.app.state.pool, status=status, stage=stage, limit=limit)
        return [_jsonable(dict(r)) for r in rows]

    @app.get("/v1/jobs/{job_id}", name="get_job", summary="A job and its stages")
    async def get_job(job_id: uuid.UUID, request: Request) -> dict:
        pool = request.app.state.pool
        job = await job_or_404(pool, job_id)
        stages = await queries.get_job_stages(pool, str(job_id))
        body = _job_json(job)
        body["stages"] = [
            _jsonable(
                {
                    k: r[k]
                    for k in (
                        "stage",
                        "status",
                        "attempt_count",
                        "max_attempts",
                        "reused",
                        "started_at",
                        "completed_at",
                        "duration_ms",
                        "last_error",
                        "next_retry_at",
                    )
                }
            )
            for r in stages
        ]
        body["result_url"] = str(request.url_for("get_result", job_id=str(job_id)))
        return body

    @app.get("/v1/jobs/{job_id}/result", name="get_result", summary="The job's final result")
    async def get_result(job_id: uuid.UUID, request: Request) -> dict:
        pool = request.app.state.pool
        job = await job_or_404(pool, job_id)
        if job["status"] != JobStatus.COMPLETED:
            raise HTTPException(409, f"job {job_id} is {job['status']}; the result is there once it completes")
        return _jsonable(await build_result(pool, job))

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202, summary="Cancel a running job")
    async def cancel_job(job_id: uuid.UUID, request: Request) -> dict:
        pool, client = request.app.state.pool, request.app.state.client
        job = await job_or_404(pool, job_id)
        if job["status"] in FINAL_STATUSES:
            raise HTTPException(409, f"job {job_id} is already {job['status']}")
        handle = client.get_workflow_handle(job["workflow_id"], run_id=job["run_id"])
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise HTTPException(409, f"job {job_id} is no longer running ({description.status.name.lower()})")
        await handle.cancel()
        return {"job_id": str(job_id), "status": "cancelling"}

    @app.get("/v1/dead-letters", summary="Jobs that failed, newest first")
    async def dead_letters(request: Request, limit: int = Query(default=50, ge=1, le=500)) -> list[dict]:
        return [_jsonable(dict(r)) for r in await queries.list_dead_letters(request.app.state.pool, limit)]

    @app.get("/healthz", summary="Whether Temporal and Postgres answer")
    async def healthz(request: Request) -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            await request.app.state.pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as err:  # any failure is the answer here
            checks["postgres"] = f"down: {type(err).__name__}"
        try:
            await request.app.state.client.service_client.check_health()
            checks["temporal"] = "ok"
        except Exception as err:
            checks["temporal"] = f"down: {type(err).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if healthy else "degraded", **checks}, status_code=200 if healthy else 503)

    return app


def _job_json(job: asyncpg.Record) -> dict:
    return _jsonable(
        {
            k: job[k]
            for k in (
                "id",
                "page_id",
                "url",
                "status",
                "stage",
                "priority",
                "max_attempts",
                "attempt_count",
                "retry_delay_seconds",
                "error",
                "workflow_id",
                "run_id",
                "created_at",
                "updated_at",
                "started_at",
                "completed_at",
            )
        }
        | {"job_id": job["id"]}
    )


def _jsonable(value: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)


def _required(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(f"{name} is not set (or use `pageperfect up`, which starts its own)")
    return value
