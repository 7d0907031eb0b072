"""The batch workflow with mocked activities: the concurrency bound, refused and busy pages, runs, cancel."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from pageperfect.models import JobOptions
from tests.helpers.workflows import BatchBook, block_until_cancelled, start_batch
from workflows.batch import PagePerfectBatchWorkflow


def urls(count: int) -> list[str]:
    return [f"https://example.test/batch/{i}" for i in range(count)]


def most_at_once(mocks) -> int:
    """The most jobs open at one moment: from their first stage's start to their finalize's end."""
    spans: dict[str, list[float]] = {}
    for call in mocks.calls:
        if call.name == "submit_crawl":
            spans.setdefault(call.arg.job.job_id, [call.started, call.started])
        elif call.name == "finalize_job":
            spans[call.arg.job.job_id][1] = call.ended
    edges = sorted([(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


async def test_at_most_concurrency_jobs_run_at_once(client, mocks, prefix):
    book = BatchBook(prefix, urls(5))
    book.install(mocks)
    release = asyncio.Event()

    async def held(call):
        await release.wait()
        return await mocks.default(call)

    mocks.on("submit_crawl", held)
    handle = await start_batch(client, book, concurrency=2)
    await mocks.wait_for(lambda: len(mocks.of("submit_crawl")) == 2, what="two jobs")
    await asyncio.sleep(0.5)  # room for a third job to start, if the bound did not hold
    assert len(mocks.of("submit_crawl")) == 2 and len(mocks.of("prepare_batch_job")) == 2
    release.set()
    summary = await handle.result()

    assert most_at_once(mocks) == 2
    assert sorted(c.arg.position for c in mocks.of("prepare_batch_job")) == [0, 1, 2, 3, 4]
    assert summary == {
        "batch_id": book.closed[0].batch_id,
        "status": "completed",
        "total": 5,
        "counts": {"completed": 5},
    }
    assert [c.status for c in book.closed] == ["completed"]
    assert await handle.query(PagePerfectBatchWorkflow.progress) == {
        "batch_id": book.closed[0].batch_id,
        "total": 5,
        "ended": {"completed": 5},
    }
    # Each page's job ran under the page's own workflow id, as the API's jobs do.
    assert {c.workflow_id for c in mocks.of("finalize_job")} == {
        f"pageperfect-page-{book.page_ids[url]}" for url in book.urls
    }


async def test_a_refused_page_counts_as_rejected_and_the_others_run(client, mocks, prefix):
    book = BatchBook(prefix, urls(3), refused={urls(3)[1]: "BlockedAddress: a private address"})
    book.install(mocks)
    summary = await (
        await start_batch(client, book, concurrency=3, webhook_url="https://hooks.example.test/batch")
    ).result()
    assert summary["counts"] == {"completed": 2, "rejected": 1}
    assert len(mocks.of("finalize_job")) == 2
    await mocks.wait_for(lambda: [c for c in mocks.of("send_webhook") if c.outcome == "returned"], what="webhook")
    (delivery,) = mocks.of("send_webhook")
    assert (delivery.arg.kind, delivery.arg.status) == ("batch", "completed")


async def test_a_page_whose_job_is_running_is_followed_not_started_again(client, mocks, prefix):
    book = BatchBook(prefix, urls(2))
    book.install(mocks)
    book.linked[1] = "the-apis-job"
    polls = []

    async def status(call):
        polls.append(call.arg)
        return "processing" if len(polls) < 2 else "completed"

    mocks.on("batch_job_status", status)
    handle = await start_batch(client, book, concurrency=2)
    await handle.result()
    assert polls == ["the-apis-job"] * 2  # polled again after poll_seconds, until it ended
    assert len(mocks.of("finalize_job")) == 1  # only page 0 got a job of its own
    assert (await handle.query(PagePerfectBatchWorkflow.progress))["ended"] == {"completed": 2}


async def test_a_long_batch_continues_as_new_and_keeps_its_counts(client, mocks, prefix):
    book = BatchBook(prefix, urls(3))
    book.install(mocks)
    handle = await start_batch(client, book, concurrency=2, pages_per_run=2)
    summary = await handle.result()  # follows the runs to the last one
    batch_id = book.opened[0].batch_id
    assert [(o.batch_id, o.batch.start) for o in book.opened] == [(batch_id, 0), (batch_id, 2)]
    assert [c.status for c in book.closed] == ["completed"]  # closed once, by the last run
    assert summary["total"] == 3
    assert (await handle.query(PagePerfectBatchWorkflow.progress))["ended"] == {"completed": 3}
    first_run = await client.get_workflow_handle(handle.id, run_id=handle.result_run_id).fetch_history()
    assert first_run.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")


async def test_cancelling_a_batch_cancels_its_running_jobs_and_starts_no_more(client, mocks, prefix):
    book = BatchBook(prefix, urls(3))
    book.install(mocks)
    mocks.on("wait_crawl", block_until_cancelled)
    handle = await start_batch(client, book, concurrency=2, jobs=JobOptions(max_attempts=1))
    await mocks.wait_for(lambda: len(mocks.of("wait_crawl")) == 2, what="two jobs in wait_crawl")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert sorted(c.arg.status for c in mocks.of("finalize_job")) == ["cancelled", "cancelled"]
    assert sorted(c.arg.position for c in mocks.of("prepare_batch_job")) == [0, 1]  # page 2 never started
    assert [c.status for c in book.closed] == ["cancelled"]
