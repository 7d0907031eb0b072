"""Rebuild the mirror's job and stage rows from Temporal history (the truth).

For writes the mirror dropped while Postgres was away: `pageperfect mirror reconcile
[JOB_ID] [--check]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from db import queries
from pageperfect.models import FINAL_STATUSES, JobStatus, StageStatus
from pageperfect.stages import STAGES_BY_NAME

# A closed run's status as a job's: terminated and timed out are failures.
CLOSED_AS = {
    WorkflowExecutionStatus.COMPLETED: JobStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: JobStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: JobStatus.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: JobStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: JobStatus.FAILED,
}


# An activity's ending event: the stage status it means, and the event's attributes that name the attempt.
_ACTIVITY_ENDINGS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: (StageStatus.COMPLETED, "activity_task_completed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: (StageStatus.FAILED, "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: (StageStatus.FAILED, "activity_task_timed_out_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: (StageStatus.CANCELLED, "activity_task_canceled_event_attributes"),
}


@dataclass
class StageTruth:
    status: str
    attempt: int


async def stages_from_history(client: Client, workflow_id: str, run_id: str) -> tuple[str, dict[str, StageTruth]]:
    """The job's status and each stage's status and attempt count, as Temporal knows them."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    scheduled: dict[int, str] = {}
    truth: dict[str, StageTruth] = {}
    async for event in handle.fetch_history_events():
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name in STAGES_BY_NAME:
                scheduled[event.event_id] = name
                truth[name] = StageTruth(StageStatus.PROCESSING, 0)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            if attrs.scheduled_event_id in scheduled:
                truth[scheduled[attrs.scheduled_event_id]].attempt = attrs.attempt
        else:
            outcome = _ACTIVITY_ENDINGS.get(kind)
            if outcome:
                attrs = getattr(event, outcome[1])
                ended = scheduled.get(attrs.scheduled_event_id)
                if ended:
                    truth[ended].status = outcome[0]
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        name = pending.activity_type.name
        if name in truth:
            truth[name].attempt = max(truth[name].attempt, pending.attempt)
            if pending.attempt > 1 and pending.HasField("last_failure"):
                truth[name].status = "retrying"
    job_status = CLOSED_AS.get(description.status, JobStatus.PROCESSING) if description.status else JobStatus.PROCESSING
    return job_status, truth


async def reconcile(pool: asyncpg.Pool, client: Client, *, job_id: str | None = None, write: bool = True) -> list[str]:
    """Differences between mirror and history; with write, the mirror is brought forward to history."""
    if job_id:
        job = await queries.get_job(pool, job_id)
        jobs = [job] if job else []
        if not jobs:
            return [f"no job {job_id}"]
    else:
        jobs = await queries.recent_jobs(pool)
    differences: list[str] = []
    for job in jobs:
        if not job["run_id"]:
            continue
        job_status, truth = await stages_from_history(client, job["workflow_id"], job["run_id"])
        rows = {r["stage"]: r for r in await queries.get_job_stages(pool, str(job["id"]))}
        for stage, fact in truth.items():
            row = rows.get(stage)
            if row is None or row["status"] != fact.status or row["attempt_count"] != fact.attempt:
                seen = f"{row['status']}/{row['attempt_count']}" if row else "missing"
                differences.append(f"{job['id']} {stage}: mirror {seen}, history {fact.status}/{fact.attempt}")
                if write:
                    await queries.mirror_stage(
                        pool,
                        job_id=str(job["id"]),
                        stage=stage,
                        status=fact.status,
                        attempt=fact.attempt,
                        max_attempts=None,
                    )
        # The job row's final status is written by the run's last activity, a moment before the run
        # closes: a final row over a running history is that moment, not a difference to undo.
        closing = job_status == JobStatus.PROCESSING and job["status"] in FINAL_STATUSES
        if job["status"] != job_status and not closing:
            differences.append(f"{job['id']}: mirror {job['status']}, history {job_status}")
            if write:
                await queries.set_job_status(pool, str(job["id"]), job_status)
    return differences
