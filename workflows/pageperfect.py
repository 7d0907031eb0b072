"""PagePerfectWorkflow: the six stages in order, driven by the stage table.

Deterministic and free of I/O: every side effect is an activity.
"""

from __future__ import annotations

import asyncio
from temporalio import workflow
from temporalio.common import Priority, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from pageperfect.models import (
        FINAL_STATUSES,
        JobInput,
        JobStatus,
        JobOutcome,
        JobProgress,
        StageInput,
        StageProgress,
        StageStatus,
        StageSummary,
    )
    from pageperfect.messages import TuneRequest, WebhookCall
    from pageperfect.stages import CONTROL_QUEUE, STAGES, Stage, queue_name
    from workflows.stages import FINALIZE_ACTIVITY, FINALIZE_RETRY, FINALIZE_TIMEOUT, retry_policy
    from workflows.webhook import announce

WORKFLOW_NAME = "PagePerfect"
URL_ATTRIBUTE = SearchAttributeKey.for_keyword("PagePerfectUrl")
STAGE_ATTRIBUTE = SearchAttributeKey.for_keyword("PagePerfectStage")
JOB_ATTRIBUTE = SearchAttributeKey.for_keyword("PagePerfectJobId")


# workflow.patched id: runs started before it replay with one stage at a time.
STAGES_WHEN_READY = "stages-start-when-their-inputs-are-ready"
# workflow.patched id: runs started before it gave each stage the summaries of every stage done before it.
INPUTS_ARE_AFTER = "stage-inputs-are-their-after"


def workflow_id_for_page(page_id: int) -> str:
    """One running job per page: the workflow id is the page's."""
    return f"pageperfect-page-{page_id}"


def temporal_priority(priority: int) -> Priority:
    # Temporal's priority keys run 1 (first) to 5 (last).
    return Priority(priority_key=5 - round(priority * 4 / 10))


@workflow.defn(name=WORKFLOW_NAME)
class PagePerfectWorkflow:
    def __init__(self) -> None:
        self._job: JobInput | None = None
        self._status: str = JobStatus.QUEUED
        self._current: str | None = None
        self._stages: dict[str, StageProgress] = {s.name: StageProgress(stage=s.name) for s in STAGES}
        self._max_attempts: int | None = None
        self._retry_delay: float | None = None

    @workflow.run
    async def run(self, job: JobInput) -> dict:
        self._job = job
        self._max_attempts = job.max_attempts
        self._retry_delay = job.retry_delay_seconds
        self._status = JobStatus.PROCESSING
        summaries: dict[str, dict] = {}
        # A stage added to the table later runs only in the runs started with it; for the others it is skipped.
        unpatched = [stage.name for stage in STAGES if stage.patch and not workflow.patched(stage.patch)]
        if unpatched:
            job = job.model_copy(update={"skip_steps": [*job.skip_steps, *unpatched]})
        for stage in STAGES:
            if stage.name in job.skip_steps:
                self._stages[stage.name].status = StageStatus.SKIPPED
        try:
            if workflow.patched(STAGES_WHEN_READY):
                await self._run_when_ready(job, summaries)
            else:  # runs started before the stage table had `after`: one stage at a time, as they were
                await self._run_in_order(job, summaries)
        except (asyncio.CancelledError, CancelledError) as err:
            await self._finish(
                JobOutcome(
                    job=job, status=JobStatus.CANCELLED, stage=self._current, summaries=_in_table_order(summaries)
                )
            )
            raise err
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                await self._finish(
                    JobOutcome(
                        job=job, status=JobStatus.CANCELLED, stage=self._current, summaries=_in_table_order(summaries)
                    )
                )
                raise
            reason, details = _describe_failure(err)
            await self._finish(
                JobOutcome(
                    job=job,
                    status=JobStatus.FAILED,
                    stage=self._current,
                    failure_reason=reason,
                    error_details=details,
                    summaries=_in_table_order(summaries),
                )
            )
            raise ApplicationError(f"{self._current} failed: {reason}", type="StageFailed", non_retryable=True) from err
        self._current = None
        await self._finish(JobOutcome(job=job, status=JobStatus.COMPLETED, summaries=_in_table_order(summaries)))
        return {"job_id": job.job_id, "status": JobStatus.COMPLETED, "stages": _in_table_order(summaries)}

    async def _run_when_ready(self, job: JobInput, summaries: dict[str, dict]) -> None:
        """Each stage starts as soon as the stages it comes `after` are done (or skipped).

        The crawl and the query clustering need nothing from each other, so they run side by
        side. When a stage fails, the stages still running are cancelled before the job ends.
        """
        done = set(job.skip_steps)
        waiting = [stage for stage in STAGES if stage.name not in done]
        running: dict[str, asyncio.Task] = {}
        try:
            while waiting or running:
                for stage in [s for s in waiting if done.issuperset(s.after)]:
                    waiting.remove(stage)
                    running[stage.name] = asyncio.create_task(self._run_stage(stage, job, summaries))
                self._show_running(running)
                await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                for name in [name for name, task in running.items() if task.done()]:
                    task = running.pop(name)
                    if task.cancelled():
                        raise asyncio.CancelledError()
                    if task.exception() is not None:
                        self._current = name  # the failed stage is the one the job ends on
                        raise task.exception()  # type: ignore[misc]
                    done.add(name)
        finally:
            for name, task in running.items():
                task.cancel()
                if self._stages[name].status == StageStatus.PROCESSING and name != self._current:
                    self._stages[name].status = StageStatus.CANCELLED
            if running:  # the cancel requests reach the activities before the job's ending runs
                await asyncio.gather(*running.values(), return_exceptions=True)

    async def _run_in_order(self, job: JobInput, summaries: dict[str, dict]) -> None:
        for stage in STAGES:
            if stage.name in job.skip_steps:
                continue
            self._current = stage.name
            workflow.upsert_search_attributes([STAGE_ATTRIBUTE.value_set(stage.name)])
            await self._run_stage(stage, job, summaries)

    async def _run_stage(self, stage: Stage, job: JobInput, summaries: dict[str, dict]) -> None:
        progress = self._stages[stage.name]
        progress.status, progress.started_at = StageStatus.PROCESSING, workflow.now()
        start_to_close, heartbeat = stage.timeouts(job.timeout_scale)
        # Exactly the stages it comes after (a skipped one is not there: the activity reads the page's latest).
        only_after = workflow.patched(INPUTS_ARE_AFTER)
        previous = {
            name: summary
            for name, summary in _in_table_order(summaries).items()
            if name in stage.after or not only_after
        }
        summary: StageSummary = await workflow.execute_activity(
            stage.name,
            StageInput(job=job, previous=previous),
            task_queue=queue_name(job.queue_prefix, stage.queue),
            start_to_close_timeout=start_to_close,
            heartbeat_timeout=heartbeat,
            retry_policy=retry_policy(stage.retry, max_attempts=self._max_attempts, initial_seconds=self._retry_delay),
            result_type=StageSummary,
        )
        summaries[stage.name] = summary.model_dump(mode="json")
        progress.status, progress.finished_at = summary.status, workflow.now()

    def _show_running(self, running: dict[str, asyncio.Task]) -> None:
        """The job's stage (progress query, PagePerfectStage attribute): the first running one in table order."""
        first = next((stage.name for stage in STAGES if stage.name in running), None)
        if first is not None and first != self._current:
            self._current = first
            workflow.upsert_search_attributes([STAGE_ATTRIBUTE.value_set(first)])

    async def _finish(self, outcome: JobOutcome) -> None:
        info = workflow.info()
        outcome.workflow_id, outcome.run_id = info.workflow_id, info.run_id
        self._status = outcome.status
        if outcome.status != JobStatus.COMPLETED:
            for progress in self._stages.values():
                if progress.status == StageStatus.PROCESSING:
                    progress.status = StageStatus(outcome.status)
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
            await announce(
                WebhookCall(
                    url=outcome.job.webhook_url,
                    kind="job",
                    id=outcome.job.job_id,
                    status=outcome.status,
                    occurred_at=workflow.now(),
                    queue_prefix=outcome.job.queue_prefix,
                )
            )

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
        if self._status in FINAL_STATUSES:
            raise ValueError(f"job is already {self._status}")


def _in_table_order(summaries: dict[str, dict]) -> dict[str, dict]:
    return {stage.name: summaries[stage.name] for stage in STAGES if stage.name in summaries}


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
