"""The kept histories in tests/histories/: one or more for every workflow, and the scenarios that make them.

The replay tests (tests/workflows/test_replay.py) run every kept history through the current
workflow code with the worker's interceptors and data converter: a history that stops replaying
means a change would break the runs in flight, and needs a `workflow.patched` branch.

`demo-completed.json` and `stages-side-by-side-completed.json` are real demo jobs (`temporal
workflow show --output json`). The others are made here: each scenario runs a real workflow on a
real dev server, its activities mocked (tests/helpers/workflows.py) so that it takes the path it
is named after. Make them again, or a new one after adding a scenario, with

    .venv/bin/python -m tests.helpers.histories                 # all scenarios
    .venv/bin/python -m tests.helpers.histories batch-completed # only these

which starts its own dev server and writes tests/histories/NAME.json. A history kept from before
a change of the workflow must stay as it is: add a new file beside it, never overwrite the old
one, unless no run that old can still be open.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from collections.abc import Awaitable, Callable

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from pageperfect.messages import GscImportInput, TuneRequest
from tests.helpers.settings import REPO
from tests.helpers.workflows import (
    BatchBook,
    MockActivities,
    block_until_cancelled,
    held_until,
    job_input,
    mocked_workers,
    page_id,
    refused_once,
    start_batch,
    start_job,
    start_on_workflow_queue,
    start_site,
    start_webhook,
    webhook_call,
)
from workflows.gsc_import import GSC_IMPORT_WORKFLOW
from workflows.pageperfect import PagePerfectWorkflow

HISTORIES = REPO / "tests" / "histories"

# A scenario runs one workflow to the end it is named after and returns the handle of the run to keep.
Scenario = Callable[[Client, MockActivities, str], Awaitable[WorkflowHandle]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[name] = function
        return function

    return register


async def _ended(handle: WorkflowHandle) -> WorkflowHandle:
    try:
        await handle.result(follow_runs=False)
    except Exception:  # failed or cancelled: that is the scenario's ending
        pass
    return handle


@scenario("job-completed-inputs-after")
async def job_completed_inputs_after(client, mocks, prefix):
    """A job run to the end, each stage given the summaries of exactly its `after` (the stage-inputs-are-their-after
    patch)."""
    return await _ended(await start_job(client, job_input(prefix)))


@scenario("job-failed")
async def job_failed(client, mocks, prefix):
    """A stage fails for good: the job's ending (finalize_job, which writes the dead letter) and no more stages."""

    async def fail(call):
        raise ApplicationError("no clusters to compare", type="BadInput", non_retryable=True)

    mocks.on("gap_analysis", fail)
    return await _ended(await start_job(client, job_input(prefix)))


@scenario("job-cancelled")
async def job_cancelled(client, mocks, prefix):
    """Cancelled while the crawl and the query clustering run side by side: both are cancelled, then the ending."""
    mocks.on("wait_crawl", block_until_cancelled)
    mocks.on("keyword_clustering", block_until_cancelled)
    handle = await start_job(client, job_input(prefix))
    await mocks.wait_for(lambda: mocks.of("wait_crawl") and mocks.of("keyword_clustering"), what="both stages")
    await handle.cancel()
    return await _ended(handle)


@scenario("job-tuned-retried-webhook")
async def job_tuned_retried_webhook(client, mocks, prefix):
    """Retuned while the crawl runs, a stage retried, and the ending announced to a webhook (a child workflow)."""
    release = asyncio.Event()
    mocks.on("submit_crawl", held_until(release))
    mocks.on("segment_embed", refused_once("ProviderError", "provider busy"))
    handle = await start_job(client, job_input(prefix, max_attempts=1, webhook_url="https://hooks.example.test/pp"))
    await mocks.wait_for(lambda: mocks.of("submit_crawl"), what="the crawl")
    await handle.execute_update(PagePerfectWorkflow.tune, TuneRequest(max_attempts=3, retry_delay_seconds=1))
    release.set()
    await _ended(handle)
    await mocks.wait_for(lambda: [c for c in mocks.of("send_webhook") if c.outcome == "returned"], what="webhook")
    return handle


@scenario("batch-completed")
async def batch_completed(client, mocks, prefix):
    """Four pages two at a time: one refused, one whose job was already running (followed), two run; a webhook."""
    urls = [f"https://example.test/batch/{i}" for i in range(4)]
    book = BatchBook(prefix, urls, refused={urls[1]: "BlockedAddress: a private address"})
    book.install(mocks)
    book.linked[2] = "the-apis-job"
    polls: list[str] = []

    async def status(call):
        polls.append(call.arg)
        return "processing" if len(polls) < 2 else "completed"

    mocks.on("batch_job_status", status)
    handle = await start_batch(client, book, concurrency=2, webhook_url="https://hooks.example.test/batch")
    await _ended(handle)
    await mocks.wait_for(lambda: [c for c in mocks.of("send_webhook") if c.outcome == "returned"], what="webhook")
    return handle


@scenario("batch-continued-as-new")
async def batch_continued(client, mocks, prefix):
    """The first run of a batch longer than a run takes: two pages, then continue-as-new (the run kept)."""
    book = BatchBook(prefix, [f"https://example.test/long/{i}" for i in range(3)])
    book.install(mocks)
    handle = await start_batch(client, book, concurrency=2, pages_per_run=2)
    await handle.result()  # all runs
    return client.get_workflow_handle(handle.id, run_id=handle.result_run_id)


@scenario("batch-cancelled")
async def batch_cancelled(client, mocks, prefix):
    """Cancelled with two jobs running and one page waiting: the jobs are cancelled, the batch closed as cancelled."""
    book = BatchBook(prefix, [f"https://example.test/cancel/{i}" for i in range(3)])
    book.install(mocks)
    mocks.on("wait_crawl", block_until_cancelled)
    handle = await start_batch(client, book, concurrency=2)
    await mocks.wait_for(lambda: len(mocks.of("wait_crawl")) == 2, what="two jobs in wait_crawl")
    await handle.cancel()
    return await _ended(handle)


@scenario("webhook-delivered")
async def webhook_delivered(client, mocks, prefix):
    """A delivery the receiver refuses once and takes on the retry."""
    mocks.on("send_webhook", refused_once("WebhookRefused", "the receiver answered 503"))
    return await _ended(await start_webhook(client, webhook_call(prefix, "completed")))


@scenario("gsc-import-completed")
async def gsc_import_completed(client, mocks, prefix):
    """One day's Search Console import of a property."""
    inp = GscImportInput(site_url="sc-domain:example.test", queue_prefix=prefix)
    return await _ended(
        await start_on_workflow_queue(client, GSC_IMPORT_WORKFLOW, inp, f"gsc-import-{page_id()}", prefix)
    )


@scenario("site-completed")
async def site_completed(client, mocks, prefix):
    """A site of three pages: its batch child runs them two at a time, the site stage is retried once, the ending."""
    book = BatchBook(prefix, [f"https://example.test/site/{i}" for i in range(3)])
    book.install(mocks)

    async def site_stage(call):
        if call.attempt == 1:
            raise ApplicationError("Postgres went away", type="ConnectionError")
        return {"pages_analysed": 3, "pages_skipped": 0, "cases": 1, "links": 1, "site_intents": 5}

    mocks.on("site_analysis", site_stage)
    return await _ended((await start_site(client, book))[1])


@scenario("site-cancelled")
async def site_cancelled(client, mocks, prefix):
    """Cancelled while its pages' jobs run: the batch child and its jobs are cancelled, then the site's ending."""
    book = BatchBook(prefix, [f"https://example.test/site-cancel/{i}" for i in range(3)])
    book.install(mocks)
    mocks.on("wait_crawl", block_until_cancelled)
    _, handle = await start_site(client, book)
    await mocks.wait_for(lambda: len(mocks.of("wait_crawl")) == 2, what="two jobs in wait_crawl")
    await handle.cancel()
    await _ended(handle)
    await mocks.wait_for(lambda: mocks.of("finalize_site"), what="the site's ending")
    return handle


async def record(client: Client, name: str) -> str:
    """Run the scenario on this server with fresh mocked workers; the kept run's history as JSON."""
    mocks = MockActivities()
    async with mocked_workers(client, mocks) as prefix:
        handle = await SCENARIOS[name](client, mocks, prefix)
        history = await handle.fetch_history()
    return history.to_json()


async def main(names: list[str]) -> None:
    from pageperfect.runtime.stack import TemporalDevServer, free_port
    from pageperfect.runtime.temporal import connect
    from tests.helpers.settings import make_settings

    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"no scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory(prefix="pageperfect-histories-") as tmp:
        server = TemporalDevServer(port=free_port(), ui_port=free_port(), db_file=Path(tmp) / "temporal.db").start()
        try:
            client = await connect(server.address, settings=make_settings())
            for name in names or list(SCENARIOS):
                path = HISTORIES / f"{name}.json"
                path.write_text(await record(client, name) + "\n", encoding="utf-8")
                print(f"wrote {path.relative_to(REPO)}")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
