"""The baseline for orchestration throughput: six no-op activities in a row, on the same kinds of queues.

It carries the same input (JobInput inside StageInput) and returns the same
StageSummary as the real stages, so only the work inside the stages differs.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from pageperfect.models import JobInput, StageInput, StageSummary
    from pageperfect.stages import STAGES, WORKFLOW_QUEUE, queue_name

BARE_WORKFLOW = "BenchBareSixStages"


def _noop(stage_name: str):
    @activity.defn(name=f"bare_{stage_name}")
    async def noop(inp: StageInput) -> StageSummary:
        return StageSummary(stage=stage_name)

    return noop


NOOP_ACTIVITIES = {stage.name: _noop(stage.name) for stage in STAGES}


@workflow.defn(name=BARE_WORKFLOW)
class BareSixStages:
    @workflow.run
    async def run(self, job: JobInput) -> dict:
        summaries: dict[str, dict] = {}
        for stage in STAGES:
            summary: StageSummary = await workflow.execute_activity(
                f"bare_{stage.name}",
                StageInput(job=job, previous=summaries),
                task_queue=queue_name(job.queue_prefix, stage.queue),
                start_to_close_timeout=timedelta(minutes=1),
                result_type=StageSummary,
            )
            summaries[stage.name] = summary.model_dump(mode="json")
        return {"job_id": job.job_id, "status": "completed", "stages": summaries}


def bare_workers(client, prefix: str, limit: int) -> list:
    """One worker per queue kind the stage table uses, with the same concurrency limit as PagePerfect's."""
    from temporalio.worker import Worker

    workers = [
        Worker(
            client,
            task_queue=queue_name(prefix, WORKFLOW_QUEUE),
            workflows=[BareSixStages],
            max_concurrent_workflow_tasks=limit,
        )
    ]
    by_queue: dict[str, list] = {}
    for stage in STAGES:
        by_queue.setdefault(stage.queue, []).append(NOOP_ACTIVITIES[stage.name])
    for kind, activities in by_queue.items():
        workers.append(
            Worker(client, task_queue=queue_name(prefix, kind), activities=activities, max_concurrent_activities=limit)
        )
    return workers
