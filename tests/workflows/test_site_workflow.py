"""The site workflow with mocked activities: pages as a batch child, then the site stage, its ending, cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from tests.helpers.workflows import BatchBook, block_until_cancelled, start_site
from workflows.batch import batch_workflow_id


def site_book(prefix: str, count: int = 3) -> BatchBook:
    return BatchBook(prefix, [f"https://example.test/site/{i}" for i in range(count)])


async def found(call):
    return {"pages_analysed": 3, "pages_skipped": 0, "cases": 1, "links": 2, "site_intents": 7}


async def test_pages_run_as_a_batch_then_the_site_stage_then_the_ending(client, mocks, prefix):
    book = site_book(prefix)
    book.install(mocks)
    mocks.on("site_analysis", found)
    inp, handle = await start_site(client, book)
    summary = await handle.result()
    assert summary["cases"] == 1 and summary["links"] == 2 and summary["pages"] == {"completed": 3}
    assert book.opened[0].batch_id == inp.batch_id and book.opened[0].workflow_id == batch_workflow_id(inp.batch_id)
    names = mocks.names()
    assert names.index("site_analysis") > max(i for i, n in enumerate(names) if n == "finalize_job")
    assert names[-1] == "finalize_site"
    stage = mocks.of("site_analysis")[0].arg
    assert stage.site_id == inp.site_id  # ids only
    ending = mocks.of("finalize_site")[0].arg
    assert (ending.status, ending.stage, ending.error) == ("completed", "site_analysis", None)
    assert ending.workflow_id == handle.id
    progress = await handle.query("progress")
    assert progress["stage"] == "site_analysis" and progress["status"] == "completed" and progress["cases"] == 1


async def test_the_site_stage_is_retried(client, mocks, prefix):
    book = site_book(prefix, 2)
    book.install(mocks)

    async def refused_then_found(call):
        if call.attempt == 1:
            # Retried by the stage's policy (a ConnectionError is not in its non-retryable list); the error asks
            # for the next attempt in 50 ms instead of the policy's 5 s, which only the delay changes.
            raise ApplicationError(
                "Postgres went away", type="ConnectionError", next_retry_delay=timedelta(milliseconds=50)
            )
        return await found(call)

    mocks.on("site_analysis", refused_then_found)
    _, handle = await start_site(client, book)
    await handle.result()
    assert [c.attempt for c in mocks.of("site_analysis")] == [1, 2]
    assert mocks.of("finalize_site")[0].arg.status == "completed"


async def test_a_site_stage_that_fails_for_good_ends_failed_with_its_reason(client, mocks, prefix):
    book = site_book(prefix, 2)
    book.install(mocks)

    async def too_few(call):
        raise ApplicationError("0 of the site's pages were analysed", type="NotEnoughPages", non_retryable=True)

    mocks.on("site_analysis", too_few)
    _, handle = await start_site(client, book)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert len(mocks.of("site_analysis")) == 1  # not retried
    ending = mocks.of("finalize_site")[0].arg
    assert ending.status == "failed" and ending.stage == "site_analysis" and "NotEnoughPages" in ending.error


async def test_cancelled_while_its_pages_run(client, mocks, prefix):
    book = site_book(prefix, 3)
    book.install(mocks)
    mocks.on("wait_crawl", block_until_cancelled)
    _, handle = await start_site(client, book)
    await mocks.wait_for(lambda: len(mocks.of("wait_crawl")) == 2, what="two page jobs in wait_crawl")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    await mocks.wait_for(lambda: mocks.of("finalize_site"), what="the ending")
    assert mocks.of("finalize_site")[0].arg.status == "cancelled" and not mocks.of("site_analysis")
    assert all(c.outcome == "cancelled" for c in mocks.of("wait_crawl"))
    assert book.closed[0].status == "cancelled"
