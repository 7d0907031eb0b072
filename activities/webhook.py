"""send_webhook: one signed POST of a job's or batch's summary; Temporal retries it until it lands."""

from __future__ import annotations

import logging

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import permanent
from activities.runtime import resources
from db import queries
from pageperfect.sources.guard import GuardError, parse_allowed_hosts
from pageperfect.services.webhooks import WebhookRefused, deliver
from pageperfect.messages import WebhookCall

log = logging.getLogger(__name__)

_JOB_FIELDS = (
    "page_id",
    "url",
    "status",
    "stage",
    "error",
    "attempt_count",
    "workflow_id",
    "run_id",
    "created_at",
    "started_at",
    "completed_at",
)


async def webhook_payload(call: WebhookCall, delivery_id: str) -> dict:
    """The summary a receiver gets: the ending's ids and status, read from the finalized rows."""
    pool = resources().pool
    if call.kind == "job":
        job = await queries.get_job(pool, call.id)
        if job is None:
            raise permanent("NotFound", f"job {call.id} is not in Postgres")
        stages = await queries.get_job_stages(pool, call.id)
        data = {
            "job_id": call.id,
            **{k: job[k] for k in _JOB_FIELDS},
            "stages": {s["stage"]: s["status"] for s in stages},
        }
    else:
        batch = await queries.get_batch(pool, call.id)
        if batch is None:
            raise permanent("NotFound", f"batch {call.id} is not in Postgres")
        data = {
            "batch_id": call.id,
            "status": batch["status"],
            "total": batch["total"],
            "source": batch["source"],
            "workflow_id": batch["workflow_id"],
            "created_at": batch["created_at"],
            "completed_at": batch["completed_at"],
            "counts": await queries.batch_counts(pool, call.id),
        }
    data["status"] = call.status  # the ending announced, even if a later run has touched the row since
    return {"id": delivery_id, "type": f"{call.kind}.{call.status}", "occurred_at": call.occurred_at, "data": data}


@activity.defn(name="send_webhook")
async def send_webhook(call: WebhookCall) -> dict:
    res = resources()
    secret = res.settings.webhook_secret
    if secret is None or not secret.get_secret_value():
        # Retryable on purpose: once the operator sets the secret and restarts the worker, it goes out.
        log.error(
            "webhook for %s %s not sent: PAGEPERFECT_WEBHOOK_SECRET is not set on this worker", call.kind, call.id
        )
        raise ApplicationError(
            "PAGEPERFECT_WEBHOOK_SECRET is not set on the worker; webhooks are never sent unsigned",
            type="WebhookSecretMissing",
        )
    delivery_id = activity.info().workflow_id or ""  # the delivery's own workflow: always set
    payload = await webhook_payload(call, delivery_id)
    try:
        delivered = await deliver(
            call.url,
            payload,
            secret=secret.get_secret_value(),
            allow=parse_allowed_hosts(res.settings.allowed_hosts),
            delivery_id=delivery_id,
            event=payload["type"],
        )
    except GuardError as err:
        raise permanent(err.kind, str(err)) from None
    except WebhookRefused as err:
        raise ApplicationError(str(err), type="WebhookRefused") from None
    except httpx.HTTPError as err:
        raise ApplicationError(
            f"the receiver could not be reached: {type(err).__name__}", type="WebhookUnreachable"
        ) from None
    return {"delivery_id": delivery_id, "status": delivered.status, "type": payload["type"]}
