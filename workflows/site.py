"""PagePerfectSite: a site's pages analysed as a batch, then one site stage over their stored results.

The pages run as a PagePerfectBatch child (the batch machinery: one job per page under the page's
own workflow id, `concurrency` at a time, each stage reusing a stored output of the reuse window).
Then `site_analysis` reads the jobs' results from Postgres, finds the cannibalization cases and
the links, and stores them. Every ending runs `finalize_site`: the site's final row and, for a
failure, its dead letter. History holds ids and counts only. Deterministic, no I/O.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pageperfect.messages import BatchInput, FinalizeSite, SiteInput, SiteStageInput
    from pageperfect.models import BatchEnding, BatchStatus
    from workflows.batch import BATCH_WORKFLOW, BOOKKEEPING_RETRY, BOOKKEEPING_TIMEOUT, batch_workflow_id
    from pageperfect.stages import COMPUTE_QUEUE, CONTROL_QUEUE, WORKFLOW_QUEUE, queue_name

SITE_WORKFLOW = "PagePerfectSite"
SITE_STAGE = "site_analysis"
FINALIZE_SITE = "finalize_site"
SITE_STAGE_TIMEOUT = timedelta(minutes=30)
SITE_STAGE_HEARTBEAT = timedelta(minutes=2)
SITE_STAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
    non_retryable_error_types=["NotEnoughPages", "NotFound", "BadInput"],
)


def site_workflow_id(site_id: str) -> str:
    return f"pageperfect-site-{site_id}"


def _reason(err: BaseException) -> str:
    cause = err.cause if isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause else err
    kind = getattr(cause, "type", None) or type(cause).__name__
    return f"{kind}: {cause}"


@workflow.defn(name=SITE_WORKFLOW)
class PagePerfectSiteWorkflow:
    def __init__(self) -> None:
        self._site_id = ""
        self._stage = "pages"
        self._status: str = BatchStatus.RUNNING
        self._summary: dict = {}

    @workflow.run
    async def run(self, inp: SiteInput) -> dict:
        info = workflow.info()
        self._site_id = inp.site_id
        control = queue_name(inp.queue_prefix, CONTROL_QUEUE)
        status: BatchEnding = BatchStatus.COMPLETED
        error: str | None = None
        try:
            pages = await workflow.execute_child_workflow(
                BATCH_WORKFLOW,
                BatchInput(
                    batch_id=inp.batch_id,
                    concurrency=inp.concurrency,
                    jobs=inp.jobs,
                    source="site",
                    queue_prefix=inp.queue_prefix,
                    poll_seconds=inp.poll_seconds,
                ),
                id=batch_workflow_id(inp.batch_id),
                task_queue=queue_name(inp.queue_prefix, WORKFLOW_QUEUE),
                result_type=dict,
            )
            self._summary["pages"] = pages.get("counts", {})
            self._stage = SITE_STAGE
            self._summary.update(
                await workflow.execute_activity(
                    SITE_STAGE,
                    SiteStageInput(site_id=inp.site_id, top_gaps=inp.jobs.options.top_gaps or 5),
                    task_queue=queue_name(inp.queue_prefix, COMPUTE_QUEUE),
                    result_type=dict,
                    start_to_close_timeout=SITE_STAGE_TIMEOUT,
                    heartbeat_timeout=SITE_STAGE_HEARTBEAT,
                    retry_policy=SITE_STAGE_RETRY,
                )
            )
        except (asyncio.CancelledError, CancelledError):
            status = BatchStatus.CANCELLED
        except (ActivityError, ChildWorkflowError) as err:
            if isinstance(err.cause, CancelledError):
                status = BatchStatus.CANCELLED
            else:
                status, error = BatchStatus.FAILED, _reason(err)
        self._status = status
        await workflow.execute_activity(
            FINALIZE_SITE,
            FinalizeSite(
                site_id=inp.site_id,
                status=status,
                stage=self._stage,
                error=error,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
            ),
            task_queue=control,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
            cancellation_type=workflow.ActivityCancellationType.ABANDON,
        )
        if status == BatchStatus.CANCELLED:
            raise CancelledError("site analysis cancelled")
        if status == BatchStatus.FAILED:
            raise ApplicationError(error or "site analysis failed", type="SiteFailed", non_retryable=True)
        return {"site_id": inp.site_id, "status": status, **self._summary}

    @workflow.query
    def progress(self) -> dict:
        """Where the site is: its pages' batch, then the site stage; the counts seen so far."""
        return {"site_id": self._site_id, "stage": self._stage, "status": self._status, **self._summary}
