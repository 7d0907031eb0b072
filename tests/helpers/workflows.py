"""Workflow tests on the real dev server with mocked activities: the fast layer's workers.

Temporal's time-skipping test server is not shipped by any package reachable here, so workflow
tests run the real workflow code on a real `temporal server start-dev` (the session's
`temporal_server` fixture, or one the history recorder starts) with every activity replaced by a
mock. Each mock is registered under the real activity's name, with the real activity's argument
and return types (read off `activities.registry.ACTIVITIES`), on the task queue the worker would
serve it from (`activities.registry.activities_by_queue`). The workflows cannot tell the
difference; the test decides what each activity does and sees every call it got.

Short timeouts keep the tests fast: jobs run with a small `timeout_scale`, and the workers send
heartbeats at once so that a cancel reaches a running activity within ~0.1 s. The dev server
waits at least one second before any retry (whatever the policy or `next_retry_delay` says), so
a test that retries costs a second per retry: retry once where once shows the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import typing
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from collections.abc import AsyncIterator, Awaitable, Callable

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.registry import ACTIVITIES, activities_by_queue
from pageperfect.messages import (
    BatchInput,
    CloseBatch,
    GscImportRequest,
    LinkRunningJob,
    OpenBatch,
    PrepareBatchJob,
    PreparedJob,
    RejectBatchPage,
    SiteInput,
    WebhookCall,
)
from pageperfect.models import JobInput, JobOutcome, StageSummary
from pageperfect.runtime.worker import worker_interceptors
from workflows.batch import BATCH_WORKFLOW, batch_workflow_id
from workflows.pageperfect import WORKFLOW_NAME, workflow_id_for_page
from workflows.registry import WORKFLOWS
from workflows.site import SITE_WORKFLOW, site_workflow_id
from workflows.webhook import WEBHOOK_WORKFLOW, webhook_workflow_id
from pageperfect.stages import STAGES_BY_NAME, WORKFLOW_QUEUE, queue_name

# Heartbeats go out at once (the SDK's default holds them back up to 30 s): a cancel is seen quickly.
HEARTBEAT_THROTTLE = timedelta(milliseconds=50)


@dataclass
class Call:
    """One attempt of one activity, as the mock saw it."""

    name: str
    arg: Any
    attempt: int
    workflow_id: str
    started: float
    ended: float | None = None
    outcome: str = "running"  # then "returned", "raised" or "cancelled"
    result: Any = None
    mocks: MockActivities | None = None  # for behaviours that fall back to the default


Behaviour = Callable[[Call], Awaitable[Any]]


class MockActivities:
    """Every activity the workflows call, by name; each does what the test sets with `on()`.

    Without a behaviour set, a stage returns a StageSummary with a fresh artifact id and the
    bookkeeping activities return what the real ones return for a quiet success.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._behaviour: dict[str, Behaviour] = {}
        self._artifacts = 0
        self.changed = asyncio.Condition()

    def on(self, name: str, behaviour: Behaviour) -> None:
        if name not in ACTIVITIES:
            raise KeyError(f"no activity {name!r}; known: {', '.join(ACTIVITIES)}")
        self._behaviour[name] = behaviour

    def of(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    def names(self) -> list[str]:
        """The activities called, in the order their attempts started."""
        return [call.name for call in self.calls]

    async def wait_for(self, check: Callable[[], Any], *, timeout: float = 20, what: str = "the activities") -> Any:
        """Until check() is true, woken by each activity start and end (no polling)."""
        async with self.changed:
            try:
                return await asyncio.wait_for(self.changed.wait_for(check), timeout)
            except TimeoutError as err:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}; calls: {self.names()}"
                ) from err

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def definitions(self) -> dict[str, list[Callable]]:
        """Queue kind -> mocks, routed exactly as the worker routes the real activities."""
        name_of = {id(function): name for name, function in ACTIVITIES.items()}
        return {
            kind: [self._mock(name_of[id(function)], function) for function in functions]
            for kind, functions in activities_by_queue().items()
        }

    def _mock(self, name: str, real: Callable) -> Callable:
        hints = typing.get_type_hints(real)
        first = next(iter(inspect.signature(real).parameters))

        async def run(arg):
            return await self._run(name, arg)

        run.__name__ = run.__qualname__ = f"mock_{name}"
        run.__annotations__ = {"arg": hints[first], "return": hints.get("return")}
        return activity.defn(name=name)(run)

    async def _run(self, name: str, arg: Any) -> Any:
        info = activity.info()
        loop = asyncio.get_running_loop()
        call = Call(
            name=name,
            arg=arg,
            attempt=info.attempt,
            workflow_id=info.workflow_id or "",
            started=loop.time(),
            mocks=self,
        )
        self.calls.append(call)
        await self._notify()
        try:
            call.result = await self._behaviour.get(name, self.default)(call)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        except BaseException:
            call.outcome = "raised"
            raise
        else:
            call.outcome = "returned"
            return call.result
        finally:
            call.ended = loop.time()
            await self._notify()

    async def default(self, call: Call) -> Any:
        """What the activity does when the test set nothing for it."""
        if call.name in STAGES_BY_NAME:
            self._artifacts += 1
            return StageSummary(
                stage=call.name, artifact_id=self._artifacts, counts={"items": 1}, info={"job_id": call.arg.job.job_id}
            )
        if call.name == "send_webhook":
            arg: WebhookCall = call.arg
            return {"delivery_id": call.workflow_id, "status": 200, "type": f"{arg.kind}.{arg.status}"}
        if call.name == "import_search_console":
            req: GscImportRequest = call.arg
            return {
                "site_url": req.site_url,
                "date_range": f"{req.start_date}/{req.end_date}",
                "pages": 0,
                "rows": 0,
                "skipped_rows": 0,
            }
        return None  # finalize_job; the batch's activities need a BatchBook


def held_until(release: asyncio.Event) -> Behaviour:
    """An activity that waits for `release`, then does its default."""

    async def held(call: Call) -> Any:
        await release.wait()
        assert call.mocks is not None
        return await call.mocks.default(call)

    return held


def refused_once(kind: str, message: str) -> Behaviour:
    """An activity whose first attempt fails with a retryable error of this type, then does its default."""

    async def refused(call: Call) -> Any:
        if call.attempt == 1:
            raise ApplicationError(message, type=kind)
        assert call.mocks is not None
        return await call.mocks.default(call)

    return refused


async def block_until_cancelled(call: Call) -> None:
    """A long activity: heartbeats until its cancel arrives (then raises CancelledError)."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def mocked_workers(client: Client, mocks: MockActivities, *, prefix: str | None = None) -> AsyncIterator[str]:
    """Workers for every queue kind on a fresh task-queue prefix: the real workflows, the mocked activities.

    Yields the prefix; the workers are shut down (and running mocks cancelled) on the way out.
    """
    prefix = prefix or f"w{uuid.uuid4().hex[:10]}"
    workers = [
        Worker(
            client,
            task_queue=queue_name(prefix, WORKFLOW_QUEUE),
            workflows=list(WORKFLOWS),
            interceptors=worker_interceptors(None),
        )
    ]
    for kind, functions in mocks.definitions().items():
        workers.append(
            Worker(
                client,
                task_queue=queue_name(prefix, kind),
                activities=functions,
                max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            )
        )
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield prefix


def page_id() -> int:
    """A page id no other test's job uses, so that workflow ids never collide on the shared server."""
    return random.randrange(10**12, 10**13)


def job_input(prefix: str, **overrides: Any) -> JobInput:
    """A job on this prefix with short timeouts: the stage table's, scaled by 0.05 (and the shortest retry delay)."""
    pid = overrides.pop("page_id", None) or page_id()
    values: dict[str, Any] = dict(
        job_id=str(uuid.uuid4()),
        page_id=pid,
        url=f"https://example.test/page-{pid}",
        queue_prefix=prefix,
        timeout_scale=0.05,
        retry_delay_seconds=0.02,
    )
    values.update(overrides)
    return JobInput(**values)


async def start_job(client: Client, job: JobInput) -> WorkflowHandle:
    """Start the PagePerfect workflow as the intake does: under the page's workflow id, on the workflow queue."""
    return await start_on_workflow_queue(
        client, WORKFLOW_NAME, job, workflow_id_for_page(job.page_id), job.queue_prefix
    )


class BatchBook:
    """The batch's rows, kept in memory: behaviours for the batch workflow's bookkeeping activities.

    `urls` are the batch's pages; a URL in `refused` is rejected by its job's intake, as the real
    prepare_batch_job rejects a page the guard refuses.
    """

    def __init__(
        self, prefix: str, urls: list[str], *, refused: dict[str, str] | None = None, timeout_scale: float = 0.05
    ) -> None:
        self.prefix, self.urls, self.refused = prefix, urls, refused or {}
        self.timeout_scale = timeout_scale
        self.page_ids = {url: page_id() for url in urls}
        self.jobs: dict[int, JobInput] = {}  # position -> the job made for it
        self.linked: dict[int, str] = {}  # position -> a running job's id the batch follows
        self.statuses: dict[str, str] = {}  # job id -> status, for batch_job_status
        self.rejected: dict[int, str] = {}
        self.closed: list[CloseBatch] = []
        self.opened: list[OpenBatch] = []

    def install(self, mocks: MockActivities) -> None:
        for name in (
            "open_batch",
            "prepare_batch_job",
            "link_running_job",
            "batch_job_status",
            "reject_batch_page",
            "close_batch",
            "finalize_job",
        ):
            mocks.on(name, getattr(self, f"_{name}"))

    def batch_input(self, **overrides: Any) -> BatchInput:
        values: dict[str, Any] = dict(
            batch_id=str(uuid.uuid4()), concurrency=2, queue_prefix=self.prefix, poll_seconds=0.05
        )
        values.update(overrides)
        return BatchInput(**values)

    async def _open_batch(self, call: Call) -> int:
        self.opened.append(call.arg)
        return len(self.urls)

    async def _prepare_batch_job(self, call: Call) -> PreparedJob:
        req: PrepareBatchJob = call.arg
        url = self.urls[req.position]
        if url in self.refused:
            self.rejected[req.position] = self.refused[url]
            return PreparedJob(rejected=self.refused[url])
        if req.position in self.linked:
            return PreparedJob(linked_job_id=self.linked[req.position])
        job = JobInput(
            job_id=req.job_id,
            page_id=self.page_ids[url],
            url=url,
            queue_prefix=req.queue_prefix,
            skip_steps=req.jobs.skip_steps,
            force_update=req.jobs.force_update,
            priority=req.jobs.priority,
            max_attempts=req.jobs.max_attempts,
            retry_delay_seconds=req.jobs.retry_delay_seconds,
            options=req.jobs.options,
            timeout_scale=self.timeout_scale,
        )
        self.jobs[req.position] = job
        return PreparedJob(job=job)

    async def _link_running_job(self, call: Call) -> str:
        req: LinkRunningJob = call.arg
        return self.linked.get(req.position, "")

    async def _batch_job_status(self, call: Call) -> str:
        return self.statuses.get(call.arg, "gone")

    async def _reject_batch_page(self, call: Call) -> None:
        req: RejectBatchPage = call.arg
        self.rejected[req.position] = req.reason

    async def _finalize_job(self, call: Call) -> None:
        outcome: JobOutcome = call.arg
        self.statuses[outcome.job.job_id] = outcome.status

    async def _close_batch(self, call: Call) -> dict:
        req: CloseBatch = call.arg
        self.closed.append(req)
        counts: dict[str, int] = {}
        for position in range(len(self.urls)):
            job_id = self.jobs[position].job_id if position in self.jobs else self.linked.get(position, "")
            outcome = "rejected" if position in self.rejected else self.statuses.get(job_id, "gone")
            counts[outcome] = counts.get(outcome, 0) + 1
        return {"batch_id": req.batch_id, "status": req.status, "total": len(self.urls), "counts": counts}


async def start_on_workflow_queue(
    client: Client, workflow: str, arg: Any, workflow_id: str, prefix: str
) -> WorkflowHandle:
    """Start a workflow by name on this prefix's workflow queue, as the services do; its result read as a dict."""
    return await client.start_workflow(
        workflow, arg, id=workflow_id, task_queue=queue_name(prefix, WORKFLOW_QUEUE), result_type=dict
    )


async def start_batch(client: Client, book: BatchBook, **overrides: Any) -> WorkflowHandle:
    """Start the batch workflow over the book's pages (`overrides` go to its BatchInput)."""
    batch = book.batch_input(**overrides)
    return await start_on_workflow_queue(client, BATCH_WORKFLOW, batch, batch_workflow_id(batch.batch_id), book.prefix)


async def start_site(client: Client, book: BatchBook) -> tuple[SiteInput, WorkflowHandle]:
    """Start the site workflow over the book's pages, two at a time; its input and its handle."""
    inp = SiteInput(
        site_id=str(uuid.uuid4()),
        batch_id=str(uuid.uuid4()),
        concurrency=2,
        queue_prefix=book.prefix,
        poll_seconds=0.05,
    )
    return inp, await start_on_workflow_queue(client, SITE_WORKFLOW, inp, site_workflow_id(inp.site_id), book.prefix)


def webhook_call(prefix: str, status: str) -> WebhookCall:
    """A job's ending (`status`) to announce to a test receiver, on this prefix."""
    return WebhookCall(
        url="https://hooks.example.test/pp",
        kind="job",
        id=f"job-{page_id()}",
        status=status,
        occurred_at=datetime.now(UTC),
        queue_prefix=prefix,
    )


async def start_webhook(client: Client, call: WebhookCall) -> WorkflowHandle:
    """Start the webhook delivery workflow for `call`."""
    return await start_on_workflow_queue(client, WEBHOOK_WORKFLOW, call, webhook_workflow_id(call), call.queue_prefix)
