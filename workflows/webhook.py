"""PagePerfectWebhook: delivers one webhook, retried by Temporal until the receiver takes it.

A job's or batch's ending starts it as an abandoned child, so the job's own run ends at
once: a slow or failing receiver never keeps the page's workflow id open (which would
make new jobs for the page answer with the finished one). Deterministic, no I/O.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pageperfect.messages import WebhookCall
    from pageperfect.stages import CONTROL_QUEUE, WORKFLOW_QUEUE, Retry, queue_name
    from workflows.stages import retry_policy

WEBHOOK_WORKFLOW = "PagePerfectWebhook"
SEND_WEBHOOK_ACTIVITY = "send_webhook"
# Receivers go down for maintenance: keep trying for a day, at most every ten minutes.
WEBHOOK_RETRY = retry_policy(
    Retry(timedelta(seconds=1), 2.0, timedelta(minutes=10), 0, non_retryable=("InvalidUrl", "BlockedAddress"))
)
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(seconds=30)
WEBHOOK_GIVE_UP_AFTER = timedelta(hours=24)


def webhook_workflow_id(call: WebhookCall) -> str:
    return f"pageperfect-webhook-{call.kind}-{call.id}"


async def announce(call: WebhookCall) -> None:
    """Start the delivery and let it outlive the caller (called from a workflow's ending)."""
    await workflow.start_child_workflow(
        WEBHOOK_WORKFLOW,
        call,
        id=webhook_workflow_id(call),
        task_queue=queue_name(call.queue_prefix, WORKFLOW_QUEUE),
        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
    )


@workflow.defn(name=WEBHOOK_WORKFLOW)
class PagePerfectWebhookWorkflow:
    @workflow.run
    async def run(self, call: WebhookCall) -> dict:
        return await workflow.execute_activity(
            SEND_WEBHOOK_ACTIVITY,
            call,
            task_queue=queue_name(call.queue_prefix, CONTROL_QUEUE),
            start_to_close_timeout=WEBHOOK_ATTEMPT_TIMEOUT,
            schedule_to_close_timeout=WEBHOOK_GIVE_UP_AFTER,
            retry_policy=WEBHOOK_RETRY,
            result_type=dict,
        )
