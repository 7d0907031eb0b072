"""The batch workflow's bookkeeping: its rows, each page's job row (through the API's intake), its ending."""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.common import permanent
from activities.runtime import resources
from pageperfect.services.intake import IntakeError, JobRequest, prepare_job
from db import queries
from pageperfect.sources.guard import GuardError, parse_allowed_hosts, validate_url
from pageperfect.models import FINAL_STATUSES, JOB_GONE, JobInput, JobStatus
from pageperfect.services.reconcile import CLOSED_AS, reconcile
from pageperfect.messages import CloseBatch, LinkRunningJob, OpenBatch, PreparedJob, PrepareBatchJob, RejectBatchPage
from workflows.pageperfect import workflow_id_for_page


@activity.defn(name="open_batch")
async def open_batch(req: OpenBatch) -> int:
    """The batch's rows: made here for a schedule's run, already there for the API's. Returns its page count."""
    pool = resources().pool
    stored = await queries.get_batch(pool, req.batch_id)
    if stored is not None:
        await queries.set_batch_run(pool, req.batch_id, req.workflow_id, req.run_id)
        return stored["total"]
    allow = parse_allowed_hosts(resources().settings.allowed_hosts)
    items: list[tuple[str, int | None, str | None]] = []
    seen: set[str] = set()
    for url in req.batch.urls:
        try:
            normalized = validate_url(url, allow)
        except GuardError as err:
            items.append((url[:2048], None, f"{err.kind}: {err}"))
            continue
        if normalized not in seen:
            seen.add(normalized)
            items.append((normalized, None, None))
    return await queries.insert_batch(
        pool,
        req.batch_id,
        source=req.batch.source,
        concurrency=req.batch.concurrency,
        options=req.batch.jobs.model_dump(mode="json"),
        webhook_url=req.batch.webhook_url,
        workflow_id=req.workflow_id,
        run_id=req.run_id,
        items=items,
    )


@activity.defn(name="prepare_batch_job")
async def prepare_batch_job(req: PrepareBatchJob) -> PreparedJob:
    """A page's job row, made by the API's own intake checks; or why the page gets none."""
    res = resources()
    pool = res.pool
    search_url = res.settings.payload_key is None  # search attributes are never encrypted
    item = await queries.get_batch_item(pool, req.batch_id, req.position)
    if item is None:
        raise permanent("NotFound", f"batch {req.batch_id} has no page {req.position}")
    if item["error"]:
        return PreparedJob(rejected=item["error"])
    if item["job_id"] is not None:
        if str(item["job_id"]) == req.job_id:  # this call ran before and its answer was lost: same job
            row = await queries.get_job(pool, req.job_id)
            if row is None:
                raise permanent("NotFound", f"job {req.job_id} of batch {req.batch_id} is gone")
            return PreparedJob(job=JobInput.model_validate(row["payload"]["job"]), search_url=search_url)
        return PreparedJob(linked_job_id=str(item["job_id"]))
    try:
        request = JobRequest(url=item["url"], **req.jobs.model_dump())
        job, payload = await prepare_job(
            request,
            pool=pool,
            settings=res.settings,
            queue_prefix=req.queue_prefix,
            job_id=req.job_id,
            keyword_set_id=item["keyword_set_id"],
        )
    except IntakeError as err:
        await queries.reject_batch_item(pool, req.batch_id, req.position, err.message)
        return PreparedJob(rejected=err.message)
    except ValidationError as err:
        reason = f"BadInput: {err.errors()[0]['msg']}"
        await queries.reject_batch_item(pool, req.batch_id, req.position, reason)
        return PreparedJob(rejected=reason)
    payload.update(batch_id=req.batch_id, batch_position=req.position, job=job.model_dump(mode="json"))
    stored = await queries.insert_batch_job(
        pool, req.batch_id, req.position, job, payload, workflow_id_for_page(job.page_id)
    )
    if not stored:
        return PreparedJob(rejected="the batch is no longer running")
    return PreparedJob(job=job, search_url=search_url)


@activity.defn(name="link_running_job")
async def link_running_job(req: LinkRunningJob) -> str:
    """The page's running job, now the batch's job for that page; "" when it has ended meanwhile."""
    linked = await queries.link_running_job(
        resources().pool, req.batch_id, req.position, req.own_job_id, req.workflow_id
    )
    return linked or ""


@activity.defn(name="reject_batch_page")
async def reject_batch_page(req: RejectBatchPage) -> None:
    pool = resources().pool
    await queries.reject_batch_item(pool, req.batch_id, req.position, req.reason)
    await queries.delete_job(pool, req.own_job_id)


@activity.defn(name="batch_job_status")
async def batch_job_status(job_id: str) -> str:
    """A job's status from its row; for a run that ended without writing it (terminated), from Temporal."""
    res = resources()
    job = await queries.get_job(res.pool, job_id)
    if job is None:
        return JOB_GONE
    client = res.extra.get("temporal_client")
    if job["status"] in FINAL_STATUSES or client is None or not (job["workflow_id"] and job["run_id"]):
        return job["status"]
    try:
        described = await client.get_workflow_handle(job["workflow_id"], run_id=job["run_id"]).describe()
    except RPCError:
        return job["status"]
    if described.status == WorkflowExecutionStatus.RUNNING:
        return job["status"]
    # The run ended without writing its row (terminated): rebuild the row from history, as reconcile does.
    await reconcile(res.pool, client, job_id=job_id, write=True)
    status = await queries.job_status(res.pool, job_id)
    # A closed run whose job row never got its ending (terminated by hand): what its run's status counts as.
    return status if status in FINAL_STATUSES else CLOSED_AS.get(described.status, JobStatus.FAILED)


@activity.defn(name="close_batch")
async def close_batch(req: CloseBatch) -> dict:
    pool = resources().pool
    await queries.close_batch(pool, req.batch_id, req.status)
    batch = await queries.get_batch(pool, req.batch_id)
    return {
        "batch_id": req.batch_id,
        "status": req.status,
        "total": batch["total"] if batch else 0,
        "counts": await queries.batch_counts(pool, req.batch_id),
    }
