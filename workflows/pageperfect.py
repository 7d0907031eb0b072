"""PagePerfectWorkflow: the six stages in order, driven by the stage table.

Deterministic and free of I/O: every side effect is an activity.
"""

from __future__ import annotations

import asyncio
from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from pageperfect.models import (
        JobInput,
        JobOutcome,
        JobProgress,
        StageInput,
        StageProgress,
        StageSummary,
        TuneRequest,
        WebhookCall,
    )
    from workflows.stages import (
        CONTROL_QUEUE,
        FINALIZE_ACTIVITY,
        FINALIZE_RETRY,
        FINALIZE_TIMEOUT,
        STAGES,
        queue_name,
    )
    from workflows.webhook import announce

WORKFLOW_NAME = "PagePerfect"
URL_ATTRIBUTE = SearchAttributeKey.for_keyword("PagePerfectUrl")
STAGE_ATTRIBUTE = SearchAttributeKey.for_keyword("PagePerfectStage")
JOB_ATTRIBUTE = SearchAttributeKey.for_keyword("PagePerfectJobId")


def workflow_id_for_page(page_id: int) -> str:
    """One running job per page: the workflow id is the page's."""
    return f"pageperfect-page-{page_id}"


@workflow.defn(name=WORKFLOW_NAME)
class PagePerfectWorkflow:
    def __init__(self) -> None:
        self._job: JobInput | None = None
        self._status = "queued"
        self._current: str | None = None
        self._stages: dict[str, StageProgress] = {s.name: StageProgress(stage=s.name) for s in STAGES}
        self._max_attempts: int | None = None
        self._retry_delay: float | None = None

    @workflow.run
    async def run(self, job: JobInput) -> dict:
        self._job = job
        self._max_attempts = job.max_attempts
        self._retry_delay = job.retry_delay_seconds
        self._status = "processing"
        summaries: dict[str, dict] = {}
        try:
            for stage in STAGES:
                progress = self._stages[stage.name]
                if stage.name in job.skip_steps:
                    progress.status = "skipped"
                    continue
                self._enter(stage.name)
                progress.status, progress.started_at = "processing", workflow.now()
                start_to_close, heartbeat = stage.timeouts(job.timeout_scale)
                summary: StageSummary = await workflow.execute_activity(
                    stage.name,
                    StageInput(job=job, previous=summaries),
                    task_queue=queue_name(job.queue_prefix, stage.queue),
                    start_to_close_timeout=start_to_close,
                    heartbeat_timeout=heartbeat,
                    retry_policy=stage.retry.policy(
                        max_attempts=self._max_attempts, initial_seconds=self._retry_delay
                    ),
                    result_type=StageSummary,
                )
                summaries[stage.name] = summary.model_dump(mode="json")
                progress.status, progress.finished_at = summary.status, workflow.now()
        except (asyncio.CancelledError, CancelledError) as err:
            await self._finish(JobOutcome(job=job, status="cancelled", stage=self._current, summaries=summaries))
            raise err
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                await self._finish(JobOutcome(job=job, status="cancelled", stage=self._current, summaries=summaries))
                raise
            reason, details = _describe_failure(err)
            await self._finish(
                JobOutcome(job=job, status="failed", stage=self._current, failure_reason=reason,
                           error_details=details, summaries=summaries)
            )
            raise ApplicationError(f"{self._current} failed: {reason}", type="StageFailed", non_retryable=True) from err
        self._current = None
        await self._finish(JobOutcome(job=job, status="completed", summaries=summaries))
        return {"job_id": job.job_id, "status": "completed", "stages": summaries}

    def _enter(self, stage: str) -> None:
        self._current = stage
        workflow.upsert_search_attributes([STAGE_ATTRIBUTE.value_set(stage)])

    async def _finish(self, outcome: JobOutcome) -> None:
        info = workflow.info()
        outcome.workflow_id, outcome.run_id = info.workflow_id, info.run_id
        self._status = outcome.status
        if outcome.status != "completed" and self._current:
            self._stages[self._current].status = outcome.status
        workflow.upsert_search_attributes([STAGE_ATTRIBUTE.value_set(outcome.status)])
        # Runs even after a cancel request: the job row and the dead letter must be written.
        await workflow.execute_activity(
            FINALIZE_ACTIVITY,
            outcome,
            task_queue=queue_name(outcome.job.queue_prefix, CONTROL_QUEUE),
            start_to_close_timeout=FINALIZE_TIMEOUT,
            retry_policy=FINALIZE_RETRY,
            cancellation_type=workflow.ActivityCancellationType.ABANDON,
        )
        # Only with a webhook: histories of jobs without one stay as they were.
        if outcome.job.webhook_url:
            await announce(WebhookCall(url=outcome.job.webhook_url, kind="job", id=outcome.job.job_id,
                                       status=outcome.status, occurred_at=workflow.now(),
                                       queue_prefix=outcome.job.queue_prefix))

    @workflow.query
    def progress(self) -> JobProgress:
        return JobProgress(
            job_id=self._job.job_id if self._job else "",
            status=self._status,
            current_stage=self._current,
            max_attempts=self._max_attempts,
            retry_delay_seconds=self._retry_delay,
            stages=list(self._stages.values()),
        )

    @workflow.update
    def tune(self, request: TuneRequest) -> JobProgress:
        """Change the retry settings of the stages not yet finished (the next attempt on)."""
        if request.max_attempts is not None:
            self._max_attempts = request.max_attempts
        if request.retry_delay_seconds is not None:
            self._retry_delay = request.retry_delay_seconds
        return self.progress()

    @tune.validator
    def _validate_tune(self, request: TuneRequest) -> None:
        if self._status in ("completed", "failed", "cancelled"):
            raise ValueError(f"job is already {self._status}")


def _describe_failure(err: ActivityError) -> tuple[str, str]:
    """A one-line reason and the chain of causes, for the dead letter."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        reason = f"{cause.type or 'Error'}: {cause.message}"
    elif isinstance(cause, TimeoutError):
        reason = f"Timeout: {cause.type.name if cause.type else 'activity timed out'}"
    else:
        reason = str(cause or err)
    chain = []
    current: BaseException | None = err
    while current is not None:
        chain.append(f"{type(current).__name__}: {current}")
        current = current.__cause__
    details = " <- ".join(chain)
    if err.retry_state is not None:
        details += f" (retry state: {err.retry_state.name})"
    return reason, details


