"""Job intake: validate, resolve the page, store keywords, start (or find) the workflow.

Shared by the API, the CLI and dead-letter redrive. Raises IntakeError with an
HTTP status and a message; never leaves a half-made job behind.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
from pydantic import ConfigDict, Field, model_validator
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError

from db import queries
from pageperfect.sources.guard import (
    AllowList,
    BlockedAddress,
    GuardError,
    parse_allowed_hosts,
    resolve_checked,
    validate_url,
)
from pageperfect.models import FINAL_STATUSES, JobInput, JobOptions, JobStatus, KeywordRow
from pageperfect.settings import Settings
from workflows.pageperfect import (
    JOB_ATTRIBUTE,
    STAGE_ATTRIBUTE,
    URL_ATTRIBUTE,
    PagePerfectWorkflow,
    temporal_priority,
    workflow_id_for_page,
)
from pageperfect.stages import WORKFLOW_QUEUE, queue_name

MAX_INLINE_KEYWORDS = 50_000


class JobRequest(JobOptions):
    """POST /v1/jobs. Give `url`, or the `page_id` of a page PagePerfect already knows."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/blog/fiddle-leaf-fig-care",
                    "keywords": [
                        {
                            "query": "fiddle leaf fig brown spots",
                            "clicks": 3,
                            "impressions": 420,
                            "ctr": 0.0071,
                            "position": 11.4,
                        }
                    ],
                }
            ]
        },
    )

    url: str | None = Field(default=None, max_length=2048)
    page_id: int | None = Field(default=None, ge=1, le=2**63 - 1)  # a Postgres BIGINT
    keywords: list[KeywordRow] | None = Field(default=None, max_length=MAX_INLINE_KEYWORDS)
    webhook_url: str | None = Field(
        default=None, max_length=2048, description="Gets a signed POST when the job completes, fails or is cancelled"
    )

    @model_validator(mode="after")
    def _one_page(self) -> JobRequest:
        if self.url is None and self.page_id is None:
            raise ValueError("give either url or page_id")
        if self.url is not None and self.page_id is not None:
            raise ValueError("give url or page_id, not both")
        return self


class IntakeError(Exception):
    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


@dataclass
class Submitted:
    job_id: str
    workflow_id: str
    run_id: str
    page_id: int
    url: str
    existing: bool
    status: JobStatus = JobStatus.QUEUED  # an existing job's own status, as its row has it


async def check_url(url: str, allow: AllowList) -> str:
    """Syntax, scheme and address checks at the door, so a bad URL never becomes a job."""
    try:
        normalized = validate_url(url, allow)
    except GuardError as err:
        raise IntakeError(422, str(err)) from err
    from urllib.parse import urlsplit

    parts = urlsplit(normalized)
    try:
        await resolve_checked(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), allow)
    except BlockedAddress as err:
        raise IntakeError(422, str(err)) from err
    except GuardError as err:
        raise IntakeError(422, str(err)) from err
    except OSError:
        pass  # the name may resolve later: the crawl checks again and says why if not
    return normalized


async def check_webhook_url(url: str, allow: AllowList) -> str:
    """A webhook goes through the same address guard as a crawl."""
    try:
        return await check_url(url, allow)
    except IntakeError as err:
        raise IntakeError(err.status_code, f"webhook_url: {err.message}") from err


async def submit_job(
    request: JobRequest,
    *,
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    queue_prefix: str | None = None,
    reuse_window_seconds: float | None = None,
) -> Submitted:
    job, payload = await prepare_job(
        request, pool=pool, settings=settings, queue_prefix=queue_prefix, reuse_window_seconds=reuse_window_seconds
    )
    return await start_job(job, payload, pool=pool, client=client)


async def prepare_job(
    request: JobRequest,
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    queue_prefix: str | None = None,
    reuse_window_seconds: float | None = None,
    job_id: str | None = None,
    keyword_set_id: int | None = None,
) -> tuple[JobInput, dict]:
    """Check the request, resolve the page and its keywords: the job's input and row payload, not yet stored."""
    allow = parse_allowed_hosts(settings.allowed_hosts)
    webhook_url = await check_webhook_url(request.webhook_url, allow) if request.webhook_url else None
    if request.page_id is not None:
        page = await queries.get_page(pool, request.page_id)
        if page is None:
            raise IntakeError(404, f"no page with id {request.page_id}")
        page_id, url = page["id"], page["url"]
        await check_url(url, allow)
    else:
        url = await check_url(request.url or "", allow)
        page_id = await queries.get_or_create_page(pool, url)

    async with pool.acquire() as conn:
        if keyword_set_id is not None:
            pass  # stored already (a batch's keywords by URL)
        elif request.keywords:
            keyword_set_id = await queries.create_keyword_set(conn, page_id, request.keywords, source="inline")
        else:
            date_range, rows = await queries.latest_gsc_rows(conn, url)
            if rows:
                keyword_set_id = await queries.create_keyword_set(
                    conn, page_id, rows, source="gsc", date_range=date_range
                )

    job = JobInput(
        job_id=job_id or str(uuid.uuid4()),
        page_id=page_id,
        url=url,
        queue_prefix=queue_prefix or settings.queue_prefix,
        keyword_set_id=keyword_set_id,
        skip_steps=list(request.skip_steps),
        force_update=request.force_update,
        priority=request.priority,
        max_attempts=request.max_attempts,
        retry_delay_seconds=request.retry_delay_seconds,
        reuse_window_seconds=(
            reuse_window_seconds if reuse_window_seconds is not None else settings.reuse_window_seconds
        ),
        timeout_scale=settings.stage_timeout_scale,
        options=request.options,
        webhook_url=webhook_url,
    )
    payload = request.model_dump(mode="json", exclude={"keywords"})
    payload["keyword_count"] = len(request.keywords or [])
    payload["keyword_set_id"] = keyword_set_id
    return job, payload


async def start_job(job: JobInput, payload: dict, *, pool: asyncpg.Pool, client: Client) -> Submitted:
    """Store the job row and start its workflow; a page with a running job gets that job back."""
    workflow_id = workflow_id_for_page(job.page_id)
    async with pool.acquire() as conn:
        await queries.insert_job(conn, job, payload, workflow_id)
    running_job_id: str | None = None
    try:
        for _ in range(2):
            handle = await client.start_workflow(
                PagePerfectWorkflow.run,
                job,
                id=workflow_id,
                task_queue=queue_name(job.queue_prefix, WORKFLOW_QUEUE),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        # Search attributes are never encrypted, so with payload encryption on the URL stays out.
                        *(
                            [SearchAttributePair(URL_ATTRIBUTE, job.url[:2000])]
                            if client.data_converter.payload_codec is None
                            else []
                        ),
                        SearchAttributePair(JOB_ATTRIBUTE, job.job_id),
                        SearchAttributePair(STAGE_ATTRIBUTE, JobStatus.QUEUED),
                    ]
                ),
                priority=temporal_priority(job.priority),
            )
            run_id = handle.result_run_id or ""
            if started_new_run(handle):
                running_job_id = job.job_id
                break
            running_job_id = await _job_id_of_run(client, workflow_id, run_id)
            # A run whose job row is already final has finished its work and is closing: once it
            # has closed, start again, so that this request gets a job of its own.
            if not (
                running_job_id
                and running_job_id != job.job_id
                and await _closed_after_its_end(pool, client, workflow_id, run_id, running_job_id)
            ):
                break
    except RPCError as err:
        await queries.delete_job(pool, job.job_id)
        raise IntakeError(
            503, f"Temporal did not take the job ({err.message}); nothing was created, try again"
        ) from err
    if running_job_id and running_job_id != job.job_id:
        # The page already has a running job: answer with that one, keep nothing of this request.
        await queries.delete_job(pool, job.job_id)
        running = await queries.get_job(pool, running_job_id)
        status = JobStatus(running["status"]) if running is not None else JobStatus.PROCESSING
        return Submitted(running_job_id, workflow_id, run_id, job.page_id, job.url, existing=True, status=status)
    await queries.set_job_run(pool, job.job_id, run_id)
    return Submitted(job.job_id, workflow_id, run_id, job.page_id, job.url, existing=False)


async def _closed_after_its_end(
    pool: asyncpg.Pool, client: Client, workflow_id: str, run_id: str, job_id: str, wait: float = 10.0
) -> bool:
    """Whether the run of a job whose row is final closes within `wait` seconds (it has only its
    last workflow task left: the job row is written by its final activity)."""
    existing = await queries.get_job(pool, job_id)
    if existing is None or existing["status"] not in FINAL_STATUSES:
        return False
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    deadline = asyncio.get_running_loop().time() + wait
    while asyncio.get_running_loop().time() < deadline:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return True
        await asyncio.sleep(0.05)
    return False


def started_new_run(handle: WorkflowHandle) -> bool | None:
    """Whether start_workflow started a new run (False: USE_EXISTING returned the running one).

    Read from the StartWorkflowExecution response, which the SDK keeps on the handle
    but does not expose; None when it is not there, and the caller reads the history.
    """
    response = getattr(handle, "_start_workflow_response", None)
    return getattr(response, "started", None)


async def _job_id_of_run(client: Client, workflow_id: str, run_id: str) -> str | None:
    """The job id a run was started with, read from its first history event."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        values = await client.data_converter.decode(attrs.input.payloads, [JobInput])
        return values[0].job_id if values else None
    return None
