"""GET /v1/stages: the stage table with each stage's backlog, as Postgres and as Temporal see it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from db import queries
from pageperfect.stages import ALL_QUEUES, STAGES, WORKFLOW_QUEUE, queue_name

router = APIRouter()


async def describe_queue(client: Client, name: str, task_type: TaskQueueType.ValueType) -> dict:
    """Temporal's own view of one task queue: the approximate backlog and its age, rates, pollers."""
    try:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=name),
                task_queue_type=task_type,
                report_stats=True,
            )
        )
    except RPCError as err:  # the SQL half of the answer is still worth having
        return {"name": name, "error": f"Temporal did not answer: {err.message}"}
    stats = answer.stats
    return {
        "name": name,
        "approximate_backlog_count": stats.approximate_backlog_count,
        "approximate_backlog_age_seconds": stats.approximate_backlog_age.ToTimedelta().total_seconds(),
        "tasks_add_rate": round(stats.tasks_add_rate, 3),
        "tasks_dispatch_rate": round(stats.tasks_dispatch_rate, 3),
        "pollers": len(answer.pollers),
    }


@router.get("/v1/stages", summary="Each stage: its task queue and its backlog in Postgres and in Temporal")
async def stages(request: Request) -> dict:
    state = request.app.state
    prefix = state.queue_prefix
    activity_type = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    kinds = [k for k in ALL_QUEUES if k != WORKFLOW_QUEUE]
    described = await asyncio.gather(
        describe_queue(state.client, queue_name(prefix, WORKFLOW_QUEUE), TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        *(describe_queue(state.client, queue_name(prefix, k), activity_type) for k in kinds),
    )
    queues = {WORKFLOW_QUEUE: {"kind": WORKFLOW_QUEUE, "task_type": "workflow", **described[0]}}
    queues.update({k: {"kind": k, "task_type": "activity", **d} for k, d in zip(kinds, described[1:])})
    backlog = {r["stage"]: dict(r) for r in await queries.stage_backlog(state.pool)}
    empty = {"ready": 0, "in_flight": 0, "retrying": 0, "oldest_waiting": None}
    return jsonable_encoder(
        {
            "queue_prefix": prefix,
            "stages": [
                {
                    "stage": stage.name,
                    "description": stage.description,
                    "queue_kind": stage.queue,
                    "task_queue": queues[stage.queue],  # shared by the stages on the same queue
                    "start_to_close_seconds": stage.start_to_close.total_seconds(),
                    "heartbeat_seconds": stage.heartbeat.total_seconds() if stage.heartbeat else None,
                    "max_attempts": stage.retry.attempts,
                    "backlog": {k: v for k, v in backlog.get(stage.name, empty).items() if k != "stage"},
                }
                for stage in STAGES
            ],
            "queues": list(queues.values()),
        }
    )
