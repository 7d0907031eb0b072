"""The mirror: stage and event rows in Postgres for every activity attempt, for SQL dashboards.

Temporal history is the truth. The mirror is written from a worker interceptor, off
the activity's path: writes queue up and a background task applies them in order,
retrying while Postgres is away, so a job never waits on (or fails for) its mirror.
Every write is idempotent and moves rows forward only, so replays, retries and
duplicate deliveries change nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, UTC
from typing import Any
from collections.abc import Awaitable, Callable

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from db import queries
from pageperfect.models import StageStatus
from pageperfect.stages import STAGES_BY_NAME
from workflows.site import SITE_STAGE

log = logging.getLogger("pageperfect.mirror")

# A mirror write runs its statements on the connection it is given, inside the writer's transaction.
Write = Callable[[asyncpg.Connection | PoolConnectionProxy], Awaitable[None]]

_POSTGRES_AWAY = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection left confused by a server restart
    asyncpg.CannotConnectNowError,
    asyncio.TimeoutError,
)


class MirrorWriter:
    """Applies mirror writes in order in the background; retries while Postgres is down.

    The writes waiting at a moment (up to `batch_size`) go in one transaction: under load
    that is one commit for many jobs' rows instead of one each. A write that Postgres
    refuses (a bad row) makes the batch go again one write at a time, so only it is lost.
    """

    MAX_PENDING = 50_000  # writes waiting at most; past that a write is dropped (and logged for reconcile)

    def __init__(self, pool: asyncpg.Pool, *, give_up_after: float = 600.0, batch_size: int = 100):
        self._pool = pool
        self._queue: asyncio.Queue[tuple[str, Write] | None] = asyncio.Queue(maxsize=self.MAX_PENDING)
        self._give_up_after = give_up_after
        self._batch_size = batch_size
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pageperfect-mirror")

    def submit(self, job_id: str, write: Write) -> None:
        try:
            self._queue.put_nowait((job_id, write))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("mirror queue full: write dropped for job %s (pageperfect mirror reconcile %s)", job_id, job_id)

    async def flush(self) -> None:
        await self._queue.join()

    async def close(self) -> None:
        if self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                writes = [item for item in batch if item is not None]
                if writes:
                    await self._apply(writes)
                if len(writes) < len(batch):  # close() was called
                    return
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _apply(self, writes: list[tuple[str, Write]]) -> None:
        if await self._in_one_transaction(writes) or len(writes) == 1:
            return
        for write in writes:  # one of them was refused: each on its own, so that only that one is lost
            await self._in_one_transaction([write])

    async def _in_one_transaction(self, writes: list[tuple[str, Write]]) -> bool:
        """True when the writes are applied, or given up on after retrying; False when Postgres refused one."""
        deadline = asyncio.get_running_loop().time() + self._give_up_after
        delay = 0.5
        while True:
            try:
                async with self._pool.acquire() as conn:
                    async with conn.transaction():
                        for _, write in writes:
                            await write(conn)
                return True
            except _POSTGRES_AWAY as err:
                if asyncio.get_running_loop().time() > deadline:
                    self.dropped += len(writes)
                    for job_id in dict.fromkeys(job_id for job_id, _ in writes):
                        log.error(
                            "mirror write dropped for job %s after retries (%s); "
                            "`pageperfect mirror reconcile %s` rebuilds it",
                            job_id,
                            err,
                            job_id,
                        )
                    return True
                await asyncio.sleep(delay * (1 + random.random() / 4))
                delay = min(delay * 2, 15.0)
            except Exception:  # a bad row must not stop the mirror for every other job
                if len(writes) == 1:
                    self.dropped += 1
                    log.exception("mirror write failed for job %s", writes[0][0])
                return False


def retry_outlook(err: BaseException, info: activity.Info) -> tuple[bool, datetime | None]:
    """Whether Temporal will try this activity again, and when."""
    policy = info.retry_policy
    if isinstance(err, ApplicationError) and err.non_retryable:
        return False, None
    error_type = err.type if isinstance(err, ApplicationError) else type(err).__name__
    if policy is None:
        return True, None
    if error_type in (policy.non_retryable_error_types or []):
        return False, None
    if policy.maximum_attempts and info.attempt >= policy.maximum_attempts:
        return False, None
    if isinstance(err, ApplicationError) and err.next_retry_delay:
        delay = err.next_retry_delay
    else:
        delay = policy.initial_interval * (policy.backoff_coefficient ** (info.attempt - 1))
        if policy.maximum_interval:
            delay = min(delay, policy.maximum_interval)
    return True, datetime.now(UTC) + delay


def _error_text(err: BaseException) -> str:
    kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
    text = str(err)
    return (text if text.startswith(f"{kind}:") else f"{kind}: {text}")[:2000]


class _MirrorInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, writer: MirrorWriter):
        super().__init__(next)
        self._writer = writer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        stage = STAGES_BY_NAME.get(info.activity_type)
        job = getattr(input.args[0], "job", None) if input.args else None
        site_id = getattr(input.args[0], "site_id", None) if input.args else None
        if info.activity_type == SITE_STAGE and site_id:
            return await self._site_attempt(input, info, site_id)
        if stage is None or job is None:
            return await self.next.execute_activity(input)
        max_attempts = info.retry_policy.maximum_attempts if info.retry_policy else None
        started = datetime.now(UTC)
        self._record(
            info,
            job.job_id,
            status=StageStatus.PROCESSING,
            started_at=started,
            max_attempts=max_attempts or None,
            message=f"attempt {info.attempt} started",
        )
        try:
            result = await self.next.execute_activity(input)
        except BaseException as err:
            finished = datetime.now(UTC)
            if _is_cancel(err):
                status, next_retry = StageStatus.CANCELLED, None
            else:
                will_retry, next_retry = retry_outlook(err, info)
                status = StageStatus.RETRYING if will_retry else StageStatus.FAILED
            self._record(
                info,
                job.job_id,
                status=status,
                started_at=started,
                completed_at=finished,
                max_attempts=max_attempts or None,
                last_error=_error_text(err),
                next_retry_at=next_retry,
                message=_error_text(err),
            )
            raise
        finished = datetime.now(UTC)
        reused = getattr(result, "status", None) == StageStatus.REUSED
        self._record(
            info,
            job.job_id,
            status=StageStatus.COMPLETED,
            started_at=started,
            completed_at=finished,
            max_attempts=max_attempts or None,
            reused=reused,
            message="reused stored output" if reused else "completed",
            metadata={"counts": getattr(result, "counts", {}), "artifact_id": getattr(result, "artifact_id", None)},
        )
        return result

    async def _site_attempt(self, input: ExecuteActivityInput, info: activity.Info, site_id: str) -> Any:
        """The site stage's attempts, as its site's stage row."""
        started = datetime.now(UTC)
        self._record_site(info, site_id, StageStatus.PROCESSING, started, None, None)
        try:
            result = await self.next.execute_activity(input)
        except BaseException as err:
            if _is_cancel(err):
                status = StageStatus.CANCELLED
            else:
                status = StageStatus.RETRYING if retry_outlook(err, info)[0] else StageStatus.FAILED
            self._record_site(info, site_id, status, started, datetime.now(UTC), _error_text(err))
            raise
        self._record_site(info, site_id, StageStatus.COMPLETED, started, datetime.now(UTC), None)
        return result

    def _record_site(
        self,
        info: activity.Info,
        site_id: str,
        status: str,
        started_at: datetime,
        completed_at: datetime | None,
        last_error: str | None,
    ) -> None:
        duration = (completed_at - started_at).total_seconds() * 1000 if completed_at else None

        async def write(conn: asyncpg.Connection | PoolConnectionProxy) -> None:
            await queries.mirror_site_stage(
                conn,
                site_id=site_id,
                stage=info.activity_type,
                status=status,
                attempt=info.attempt,
                started_at=started_at,
                completed_at=completed_at,
                duration_ms=duration,
                last_error=last_error,
            )

        self._writer.submit(site_id, write)

    def _record(
        self,
        info: activity.Info,
        job_id: str,
        *,
        status: str,
        started_at: datetime,
        max_attempts: int | None,
        message: str,
        completed_at: datetime | None = None,
        last_error: str | None = None,
        next_retry_at: datetime | None = None,
        reused: bool = False,
        metadata: dict | None = None,
    ) -> None:
        stage, attempt = info.activity_type, info.attempt
        duration = (completed_at - started_at).total_seconds() * 1000 if completed_at else None
        event_meta = {"duration_ms": duration, **(metadata or {})}
        if next_retry_at:
            event_meta["next_retry_at"] = next_retry_at.isoformat()
        when = completed_at or started_at

        async def write(conn: asyncpg.Connection | PoolConnectionProxy) -> None:
            await queries.mirror_stage(
                conn,
                job_id=job_id,
                stage=stage,
                status=status,
                attempt=attempt,
                max_attempts=max_attempts,
                started_at=started_at,
                completed_at=completed_at,
                duration_ms=duration,
                last_error=last_error,
                next_retry_at=next_retry_at,
                reused=reused,
            )
            await queries.mirror_event(
                conn,
                job_id=job_id,
                stage=stage,
                status=status,
                message=message,
                metadata=event_meta,
                workflow_id=info.workflow_id or "",
                run_id=info.workflow_run_id or "",
                activity_id=info.activity_id,
                attempt=attempt,
                created_at=when,
            )
            if status == StageStatus.PROCESSING:
                await queries.mirror_job_progress(
                    conn, job_id=job_id, stage=stage, attempt=attempt, run_id=info.workflow_run_id or ""
                )

        self._writer.submit(job_id, write)


def _is_cancel(err: BaseException) -> bool:
    from temporalio.exceptions import CancelledError

    return isinstance(err, (asyncio.CancelledError, CancelledError))


class MirrorInterceptor(Interceptor):
    """Worker interceptor: mirrors every stage activity attempt. Touches no workflow history."""

    def __init__(self, writer: MirrorWriter):
        self.writer = writer

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _MirrorInbound(next, self.writer)
