"""PagePerfectBatch: one PagePerfect job per page, at most `concurrency` running at once.

Each page's job is a child workflow under the page's own workflow id
(workflow_id_for_page), so "one running job per page" holds across batches, the API
and schedules alike. Its job row is made first, by an activity that runs the API's
intake checks (pageperfect.services.intake.prepare_job); when the page already has a running job the
child cannot start, and the batch links that job instead and follows it in Postgres.
Deterministic, no I/O.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import CancelledError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pageperfect.messages import (
        MAX_CONCURRENCY,
        BatchInput,
        CloseBatch,
        LinkRunningJob,
        OpenBatch,
        PreparedJob,
        PrepareBatchJob,
        RejectBatchPage,
        WebhookCall,
    )
    from workflows.pageperfect import (
        JOB_ATTRIBUTE,
        STAGE_ATTRIBUTE,
        URL_ATTRIBUTE,
        WORKFLOW_NAME,
        temporal_priority,
        workflow_id_for_page,
    )
    from pageperfect.models import (
        FINAL_STATUSES,
        JOB_GONE,
        PAGE_ERROR,
        BatchEnding,
        BatchPageStatus,
        BatchStatus,
        JobStatus,
    )
    from pageperfect.stages import CONTROL_QUEUE, WORKFLOW_QUEUE, Retry, queue_name
    from workflows.stages import retry_policy
    from workflows.webhook import announce

BATCH_WORKFLOW = "PagePerfectBatch"
START_TRIES = 10  # a page whose workflow id stays taken by something that is not a job is given up

# The batch's bookkeeping retries until Postgres takes it, like finalize_job.
BOOKKEEPING_TIMEOUT = timedelta(seconds=60)
BOOKKEEPING_RETRY = retry_policy(Retry(timedelta(seconds=2), 2.0, timedelta(minutes=1), 0, non_retryable=("NotFound",)))


@workflow.defn(name=BATCH_WORKFLOW)
class PagePerfectBatchWorkflow:
    def __init__(self) -> None:
        self._batch_id = ""
        self._total = 0
        self._outcomes: dict[str, int] = {}

    @workflow.run
    async def run(self, batch: BatchInput) -> dict:
        info = workflow.info()
        self._batch_id = batch.batch_id or str(workflow.uuid4())
        self._outcomes = dict(batch.ended)
        control = queue_name(batch.queue_prefix, CONTROL_QUEUE)
        self._total = await workflow.execute_activity(
            "open_batch",
            OpenBatch(batch=batch, batch_id=self._batch_id, workflow_id=info.workflow_id, run_id=info.run_id),
            task_queue=control,
            result_type=int,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        slots = asyncio.Semaphore(max(1, min(batch.concurrency, MAX_CONCURRENCY)))
        stop = min(self._total, batch.start + max(1, batch.pages_per_run))
        status: BatchEnding = BatchStatus.COMPLETED
        try:
            # return_exceptions: on a cancel, gather waits until every page has ended (its job cancelled).
            ended = await asyncio.gather(
                *(self._page(batch, position, slots) for position in range(batch.start, stop)), return_exceptions=True
            )
        except (asyncio.CancelledError, CancelledError):
            status = BatchStatus.CANCELLED
        else:
            for position, outcome in zip(range(batch.start, stop), ended):
                if isinstance(outcome, BaseException):
                    workflow.logger.warning("batch %s page %d: %s", self._batch_id, position, outcome)
                    self._note(PAGE_ERROR)
            if stop < self._total:
                workflow.continue_as_new(
                    batch.model_copy(
                        update={"batch_id": self._batch_id, "urls": [], "start": stop, "ended": self._outcomes}
                    )
                )
        summary = await workflow.execute_activity(
            "close_batch",
            CloseBatch(batch_id=self._batch_id, status=status),
            task_queue=control,
            result_type=dict,
            cancellation_type=workflow.ActivityCancellationType.ABANDON,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        if batch.webhook_url:
            await announce(
                WebhookCall(
                    url=batch.webhook_url,
                    kind="batch",
                    id=self._batch_id,
                    status=status,
                    occurred_at=workflow.now(),
                    queue_prefix=batch.queue_prefix,
                )
            )
        if status == BatchStatus.CANCELLED:
            raise CancelledError("batch cancelled")
        return summary

    async def _page(self, batch: BatchInput, position: int, slots: asyncio.Semaphore) -> None:
        async with slots:
            self._note(await self._run_page(batch, position))

    async def _run_page(self, batch: BatchInput, position: int) -> str:
        control = queue_name(batch.queue_prefix, CONTROL_QUEUE)
        prepared: PreparedJob = await workflow.execute_activity(
            "prepare_batch_job",
            PrepareBatchJob(
                batch_id=self._batch_id,
                position=position,
                job_id=str(workflow.uuid4()),
                jobs=batch.jobs,
                queue_prefix=batch.queue_prefix,
            ),
            task_queue=control,
            result_type=PreparedJob,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        if prepared.rejected is not None:
            return BatchPageStatus.REJECTED
        if prepared.linked_job_id is not None:
            return await self._follow(prepared.linked_job_id, batch)
        job = prepared.job
        assert job is not None
        workflow_id = workflow_id_for_page(job.page_id)
        for _ in range(START_TRIES):
            try:
                handle = await workflow.start_child_workflow(
                    WORKFLOW_NAME,
                    job,
                    id=workflow_id,
                    task_queue=queue_name(job.queue_prefix, WORKFLOW_QUEUE),
                    # A cancelled (or terminated) batch asks its running jobs to cancel: they end as cancelled.
                    parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                    search_attributes=TypedSearchAttributes(
                        [
                            *([SearchAttributePair(URL_ATTRIBUTE, job.url[:2000])] if prepared.search_url else []),
                            SearchAttributePair(JOB_ATTRIBUTE, job.job_id),
                            SearchAttributePair(STAGE_ATTRIBUTE, JobStatus.QUEUED),
                        ]
                    ),
                    priority=temporal_priority(job.priority),
                    result_type=dict,
                )
            except WorkflowAlreadyStartedError:
                # The page has a running job (the API's, or another batch's): that one counts for this page.
                linked = await workflow.execute_activity(
                    "link_running_job",
                    LinkRunningJob(
                        batch_id=self._batch_id, position=position, own_job_id=job.job_id, workflow_id=workflow_id
                    ),
                    task_queue=control,
                    result_type=str,
                    start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                    retry_policy=BOOKKEEPING_RETRY,
                )
                if linked:
                    return await self._follow(linked, batch)
                await workflow.sleep(timedelta(seconds=batch.poll_seconds))  # it ended meanwhile: start ours
                continue
            try:
                await handle
                return BatchPageStatus.COMPLETED
            except ChildWorkflowError as err:
                return BatchPageStatus.CANCELLED if isinstance(err.cause, CancelledError) else BatchPageStatus.FAILED
        # The page's workflow id stays taken by a run without a job row (started by hand?): say so, go on.
        await workflow.execute_activity(
            "reject_batch_page",
            RejectBatchPage(
                batch_id=self._batch_id,
                position=position,
                own_job_id=job.job_id,
                reason=f"{workflow_id} is held by a run that is not a job",
            ),
            task_queue=control,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )
        return BatchPageStatus.REJECTED

    async def _follow(self, job_id: str, batch: BatchInput) -> str:
        """Wait for a job this batch did not start, by its row (its own workflow writes the ending there)."""
        while True:
            status = await workflow.execute_activity(
                "batch_job_status",
                job_id,
                task_queue=queue_name(batch.queue_prefix, CONTROL_QUEUE),
                result_type=str,
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=BOOKKEEPING_RETRY,
            )
            if status in FINAL_STATUSES or status == JOB_GONE:
                return status
            await workflow.sleep(timedelta(seconds=batch.poll_seconds))

    def _note(self, outcome: str) -> None:
        self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1

    @workflow.query
    def progress(self) -> dict:
        """The batch's pages by outcome, as this run has seen them end."""
        return {"batch_id": self._batch_id, "total": self._total, "ended": dict(self._outcomes)}


def batch_workflow_id(batch_id: str) -> str:
    return f"pageperfect-batch-{batch_id}"
