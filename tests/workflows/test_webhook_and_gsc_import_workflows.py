"""The webhook and Search Console import workflows with mocked activities: retries, permanent failures, inputs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from pageperfect.messages import GscImportInput, WebhookCall
from tests.helpers.workflows import page_id, refused_once, start_webhook, webhook_call
from workflows.gsc_import import GSC_IMPORT_WORKFLOW
from pageperfect.stages import WORKFLOW_QUEUE, queue_name
from workflows.webhook import webhook_workflow_id


async def deliver(client, prefix: str) -> tuple[WebhookCall, object]:
    call = webhook_call(prefix, "failed")
    return call, await start_webhook(client, call)


async def test_a_webhook_is_retried_until_the_receiver_takes_it(client, mocks, prefix):
    mocks.on("send_webhook", refused_once("WebhookRefused", "the receiver answered 503"))
    call, handle = await deliver(client, prefix)
    assert await handle.result() == {"delivery_id": webhook_workflow_id(call), "status": 200, "type": "job.failed"}
    assert [c.attempt for c in mocks.of("send_webhook")] == [1, 2]
    assert mocks.of("send_webhook")[0].arg == call


async def test_a_webhook_to_a_blocked_address_is_not_retried(client, mocks, prefix):
    async def blocked(call):
        raise ApplicationError("127.0.0.1 is a loopback address", type="BlockedAddress")  # listed as permanent

    mocks.on("send_webhook", blocked)
    _, handle = await deliver(client, prefix)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, ActivityError)
    assert failure.value.cause.cause.type == "BlockedAddress"
    assert len(mocks.of("send_webhook")) == 1


async def import_gsc(client, prefix: str, **fields):
    inp = GscImportInput(site_url="sc-domain:example.test", queue_prefix=prefix, **fields)
    return await client.start_workflow(
        GSC_IMPORT_WORKFLOW,
        inp,
        id=f"gsc-import-{page_id()}",
        task_queue=queue_name(prefix, WORKFLOW_QUEUE),
        result_type=dict,
    )


async def test_the_import_asks_for_the_window_of_days_ending_lag_days_before_the_run(client, mocks, prefix):
    handle = await import_gsc(client, prefix, days=28, lag_days=3, page="https://example.test/a")
    result = await handle.result()
    started = (await handle.describe()).start_time
    (call,) = mocks.of("import_search_console")
    end = started.date() - timedelta(days=3)
    assert (call.arg.site_url, call.arg.page) == ("sc-domain:example.test", "https://example.test/a")
    assert (call.arg.start_date, call.arg.end_date) == ((end - timedelta(days=27)).isoformat(), end.isoformat())
    assert result["date_range"] == f"{call.arg.start_date}/{call.arg.end_date}"


async def test_an_import_without_credentials_fails_at_once(client, mocks, prefix):
    async def no_key(call):
        raise ApplicationError("PAGEPERFECT_GSC_CREDENTIALS is not set on the worker", type="MissingCredentials")

    mocks.on("import_search_console", no_key)
    with pytest.raises(WorkflowFailureError) as failure:
        await (await import_gsc(client, prefix)).result()
    assert failure.value.cause.cause.type == "MissingCredentials"
    assert len(mocks.of("import_search_console")) == 1
