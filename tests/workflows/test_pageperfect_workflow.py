"""The PagePerfect workflow with mocked stages: order, inputs, failures, cancel, tune, the ending."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from pageperfect.messages import TuneRequest
from pageperfect.models import JobOutcome
from tests.helpers.workflows import block_until_cancelled, held_until, job_input, start_job
from workflows.pageperfect import PagePerfectWorkflow
from pageperfect.stages import STAGES, STAGES_BY_NAME
from workflows.webhook import webhook_workflow_id

STAGE_NAMES = [stage.name for stage in STAGES]


def stage_calls(mocks):
    return [call for call in mocks.calls if call.name in STAGES_BY_NAME]


def outcome_of(mocks) -> JobOutcome:
    (finalize,) = mocks.of("finalize_job")
    return finalize.arg


async def test_each_stage_starts_once_the_stages_it_comes_after_are_done(client, mocks, prefix):
    async def crawl(call):
        # Returns only once the query clustering has started: the two must run side by side.
        await mocks.wait_for(lambda: mocks.of("keyword_clustering"), what="keyword_clustering beside the crawl")
        return await mocks.default(call)

    mocks.on("submit_crawl", crawl)
    job = job_input(prefix)
    result = await (await start_job(client, job)).result()

    assert result["status"] == "completed" and list(result["stages"]) == STAGE_NAMES
    calls = {call.name: call for call in stage_calls(mocks)}
    assert sorted(calls) == sorted(STAGE_NAMES) and len(stage_calls(mocks)) == len(STAGES)  # one attempt each
    for stage in STAGES:
        for before in stage.after:
            assert calls[before].ended <= calls[stage.name].started, f"{stage.name} started before {before} ended"
    assert calls["keyword_clustering"].started < calls["submit_crawl"].ended  # side by side
    assert mocks.names()[-1] == "finalize_job"  # the ending comes last
    assert mocks.of("finalize_job")[0].started >= max(call.ended for call in stage_calls(mocks))


async def test_each_stage_receives_the_job_and_the_summaries_of_exactly_its_after_stages(client, mocks, prefix):
    job = job_input(prefix, max_attempts=4)
    handle = await start_job(client, job)
    result = await handle.result()

    returned = {call.name: call.result.model_dump(mode="json") for call in stage_calls(mocks)}
    for call in stage_calls(mocks):
        assert call.arg.job == job
        finished_before = {c.name for c in stage_calls(mocks) if c.ended is not None and c.ended <= call.started}
        assert set(call.arg.previous) == set(STAGES_BY_NAME[call.name].after)  # not every stage done before it
        assert set(call.arg.previous) <= finished_before
        assert call.arg.previous == {name: returned[name] for name in call.arg.previous}
        assert list(call.arg.previous) == [name for name in STAGE_NAMES if name in call.arg.previous]  # table order
    assert result["stages"] == returned
    outcome = outcome_of(mocks)
    assert outcome.job == job and outcome.status == "completed" and outcome.failure_reason is None
    assert outcome.summaries == returned
    assert (outcome.workflow_id, outcome.run_id) == (handle.id, handle.result_run_id)


async def test_skipped_stages_are_not_called_and_the_stages_after_them_still_run(client, mocks, prefix):
    job = job_input(prefix, skip_steps=["submit_crawl", "wait_crawl"])
    handle = await start_job(client, job)
    result = await handle.result()

    assert [c.name for c in stage_calls(mocks)].count("segment_embed") == 1
    assert not mocks.of("submit_crawl") and not mocks.of("wait_crawl")
    assert "wait_crawl" not in mocks.of("segment_embed")[0].arg.previous  # the activity reads the stored one
    assert list(result["stages"]) == [name for name in STAGE_NAMES if name not in job.skip_steps]
    progress = await handle.query(PagePerfectWorkflow.progress)
    assert {s.stage: s.status for s in progress.stages} == {
        name: "skipped" if name in job.skip_steps else "completed" for name in STAGE_NAMES
    }


@pytest.mark.parametrize(
    "error",
    [
        ApplicationError("no clusters to compare", type="BadInput", non_retryable=True),
        # Not flagged by the activity: the stage table's retry policy lists the type as permanent.
        ApplicationError("no clusters to compare", type="NotFound"),
    ],
    ids=["flagged-non-retryable", "type-in-the-stage-table"],
)
async def test_a_permanent_failure_is_not_retried_and_the_ending_carries_its_reason(client, mocks, prefix, error):
    async def fail(call):
        raise error

    mocks.on("gap_analysis", fail)
    handle = await start_job(client, job_input(prefix, max_attempts=5))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "StageFailed" and cause.non_retryable
    assert cause.message == f"gap_analysis failed: {error.type}: no clusters to compare"
    assert len(mocks.of("gap_analysis")) == 1 and not mocks.of("rewrite_draft")
    outcome = outcome_of(mocks)  # what finalize_job turns into the dead letter
    assert outcome.status == "failed" and outcome.stage == "gap_analysis"
    assert outcome.failure_reason == f"{error.type}: no clusters to compare"
    assert "ActivityError" in outcome.error_details and "(retry state: NON_RETRYABLE_FAILURE)" in outcome.error_details
    assert list(outcome.summaries) == ["submit_crawl", "wait_crawl", "segment_embed", "keyword_clustering"]
    progress = await handle.query(PagePerfectWorkflow.progress)
    assert progress.status == "failed"
    assert {s.stage: s.status for s in progress.stages}["gap_analysis"] == "failed"


async def busy_once(call):
    if call.attempt < 2:
        raise ApplicationError("provider busy", type="ProviderError")
    return await call.mocks.default(call)


async def test_a_retryable_failure_is_retried_within_the_jobs_max_attempts(client, mocks, prefix):
    mocks.on("segment_embed", busy_once)
    assert (await (await start_job(client, job_input(prefix, max_attempts=2))).result())["status"] == "completed"
    assert [c.attempt for c in mocks.of("segment_embed")] == [1, 2]


async def test_retries_used_up_end_the_job_failed(client, mocks, prefix):
    async def always_busy(call):
        raise ApplicationError("provider busy", type="ProviderError")

    mocks.on("rewrite_draft", always_busy)
    with pytest.raises(WorkflowFailureError):
        await (await start_job(client, job_input(prefix, max_attempts=2))).result()
    assert [c.attempt for c in mocks.of("rewrite_draft")] == [1, 2]
    outcome = outcome_of(mocks)
    assert outcome.status == "failed" and outcome.stage == "rewrite_draft"
    assert outcome.failure_reason == "ProviderError: provider busy"
    assert "(retry state: MAXIMUM_ATTEMPTS_REACHED)" in outcome.error_details


async def silent(call):
    await asyncio.sleep(30)  # never heartbeats


# The stage table's timeouts, scaled: submit_crawl's 90 s start-to-close to 0.9 s (it has no heartbeat),
# segment_embed's 60 s heartbeat to 0.3 s.
@pytest.mark.parametrize(
    "stage, scale, kind",
    [("submit_crawl", 0.01, "START_TO_CLOSE"), ("segment_embed", 0.005, "HEARTBEAT")],
    ids=["start-to-close", "heartbeat"],
)
async def test_a_stage_over_its_scaled_timeout_fails_the_job_with_the_timeout(
    client, mocks, prefix, stage, scale, kind
):
    mocks.on(stage, silent)
    with pytest.raises(WorkflowFailureError):
        await (await start_job(client, job_input(prefix, max_attempts=1, timeout_scale=scale))).result()
    outcome = outcome_of(mocks)
    assert outcome.status == "failed" and outcome.stage == stage
    assert outcome.failure_reason == f"Timeout: {kind}"


async def test_cancel_ends_the_job_cancelled_and_cancels_the_stages_running(client, mocks, prefix):
    mocks.on("wait_crawl", block_until_cancelled)
    mocks.on("keyword_clustering", block_until_cancelled)
    handle = await start_job(client, job_input(prefix))
    await mocks.wait_for(lambda: mocks.of("wait_crawl") and mocks.of("keyword_clustering"), what="both stages")
    progress = await handle.query(PagePerfectWorkflow.progress)
    assert progress.status == "processing" and progress.current_stage == "wait_crawl"  # first running, table order

    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    outcome = outcome_of(mocks)
    assert outcome.status == "cancelled" and outcome.stage == "wait_crawl" and outcome.failure_reason is None
    assert list(outcome.summaries) == ["submit_crawl"]
    await mocks.wait_for(
        lambda: all(c.outcome == "cancelled" for c in mocks.of("wait_crawl") + mocks.of("keyword_clustering")),
        what="the running activities to see their cancel",
    )
    assert not mocks.of("segment_embed")
    statuses = {s.stage: s.status for s in (await handle.query(PagePerfectWorkflow.progress)).stages}
    assert statuses == {
        "submit_crawl": "completed",
        "wait_crawl": "cancelled",
        "segment_embed": "pending",
        "keyword_clustering": "cancelled",
        "gap_analysis": "pending",
        "rewrite_draft": "pending",
    }


async def test_a_failure_cancels_the_stage_running_beside_it(client, mocks, prefix):
    async def gone(call):
        await mocks.wait_for(lambda: mocks.of("keyword_clustering"), what="the clustering to start")
        raise ApplicationError("the page is gone", type="NotFound", non_retryable=True)

    mocks.on("keyword_clustering", block_until_cancelled)
    mocks.on("wait_crawl", gone)
    with pytest.raises(WorkflowFailureError):
        await (handle := await start_job(client, job_input(prefix))).result()
    outcome = outcome_of(mocks)
    assert outcome.status == "failed" and outcome.stage == "wait_crawl"
    assert outcome.failure_reason == "NotFound: the page is gone"
    await mocks.wait_for(lambda: mocks.of("keyword_clustering")[0].outcome == "cancelled", what="the cancel")
    # The clustering's cancel was requested before the ending was scheduled.
    kinds = [e.event_type for e in (await handle.fetch_history()).events]
    cancel_requested = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
    scheduled = [i for i, kind in enumerate(kinds) if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert cancel_requested < scheduled[-1]  # the last activity scheduled is finalize_job
    statuses = {s.stage: s.status for s in (await handle.query(PagePerfectWorkflow.progress)).stages}
    assert statuses["wait_crawl"] == "failed" and statuses["keyword_clustering"] == "cancelled"


@pytest.mark.parametrize("tuned", [False, True], ids=["as-submitted", "tuned"])
async def test_tune_sets_the_retries_of_the_stages_not_yet_finished(client, mocks, prefix, tuned):
    release = asyncio.Event()
    mocks.on("submit_crawl", held_until(release))
    mocks.on("gap_analysis", busy_once)
    handle = await start_job(client, job_input(prefix, max_attempts=1, retry_delay_seconds=600))
    await mocks.wait_for(lambda: mocks.of("submit_crawl"), what="the crawl")
    if tuned:
        progress = await handle.execute_update(
            PagePerfectWorkflow.tune, TuneRequest(max_attempts=2, retry_delay_seconds=0.1)
        )
        assert (progress.max_attempts, progress.retry_delay_seconds) == (2, 0.1)
    release.set()
    if tuned:
        assert (await handle.result())["status"] == "completed"
        assert [c.attempt for c in mocks.of("gap_analysis")] == [1, 2]
    else:
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert [c.attempt for c in mocks.of("gap_analysis")] == [1]


async def test_tune_is_refused_once_the_job_has_ended(client, mocks, prefix):
    release = asyncio.Event()

    async def held_finalize(call):
        await release.wait()

    mocks.on("finalize_job", held_finalize)
    handle = await start_job(client, job_input(prefix))
    await mocks.wait_for(lambda: mocks.of("finalize_job"), what="the ending")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(PagePerfectWorkflow.tune, TuneRequest(max_attempts=3))
    assert "job is already completed" in str(refused.value.cause)
    release.set()
    assert (await handle.result())["status"] == "completed"


async def test_a_job_with_a_webhook_announces_its_ending_after_finalize(client, mocks, prefix):
    job = job_input(prefix, webhook_url="https://hooks.example.test/pp")
    await (await start_job(client, job)).result()
    await mocks.wait_for(lambda: [c for c in mocks.of("send_webhook") if c.outcome == "returned"], what="the webhook")
    (delivery,) = mocks.of("send_webhook")
    assert (delivery.arg.kind, delivery.arg.id, delivery.arg.status, delivery.arg.url) == (
        "job",
        job.job_id,
        "completed",
        job.webhook_url,
    )
    assert delivery.workflow_id == webhook_workflow_id(delivery.arg)
    assert mocks.of("finalize_job")[0].ended <= delivery.started


async def test_a_job_without_a_webhook_starts_no_delivery(client, mocks, prefix):
    handle = await start_job(client, job_input(prefix))
    await handle.result()
    events = (await handle.fetch_history()).events
    assert not [e for e in events if e.HasField("start_child_workflow_execution_initiated_event_attributes")]
