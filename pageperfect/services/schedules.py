"""Temporal Schedules for the recurring work: re-analyzing pages, importing Search Console data.

A re-analysis schedule starts a PagePerfectBatch every N days over a fixed list of
pages; a Search Console schedule starts PagePerfectGscImport once a day. What a
schedule carries is what its workflow's input carries: URLs, options, a property
name. Credentials never: the worker reads them from its own environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from pageperfect.sources.guard import GuardError, parse_allowed_hosts, validate_url
from pageperfect.settings import Settings
from pageperfect.models import JobOptions
from pageperfect.messages import DEFAULT_CONCURRENCY, MAX_BATCH_PAGES, BatchInput, GscImportInput
from workflows.batch import BATCH_WORKFLOW, PagePerfectBatchWorkflow
from workflows.gsc_import import GSC_IMPORT_WORKFLOW, PagePerfectGscImportWorkflow
from pageperfect.stages import WORKFLOW_QUEUE, queue_name

KINDS = {BATCH_WORKFLOW: "reanalyze", GSC_IMPORT_WORKFLOW: "gsc-import"}


class ScheduleError(ValueError):
    """Bad input for a schedule, or a schedule that is not there; the message says which."""


@dataclass
class ScheduleSummary:
    id: str
    kind: str
    when: str
    paused: bool
    note: str
    next_run: datetime | None
    last_run: datetime | None


def _check_id(schedule_id: str) -> str:
    schedule_id = schedule_id.strip()
    if not schedule_id or len(schedule_id) > 200 or any(c.isspace() for c in schedule_id):
        raise ScheduleError("a schedule id is 1 to 200 characters without spaces")
    return schedule_id


def check_pages(urls: list[str], settings: Settings) -> list[str]:
    """The URLs as the crawl will fetch them, duplicates dropped; refuses naming every bad one."""
    allow = parse_allowed_hosts(settings.allowed_hosts)
    pages, refused = [], []
    for index, url in enumerate(u.strip() for u in urls):
        try:
            pages.append(validate_url(url, allow))
        except GuardError as err:
            refused.append(f"line {index + 1} {url[:100]!r}: {err}")
    if refused:
        raise ScheduleError("; ".join(refused[:5]) + (f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""))
    pages = list(dict.fromkeys(pages))
    if not pages:
        raise ScheduleError("no pages given")
    if len(pages) > MAX_BATCH_PAGES:
        raise ScheduleError(f"{len(pages)} pages; a batch takes at most {MAX_BATCH_PAGES}")
    return pages


async def _create(client: Client, schedule_id: str, schedule: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError as err:
        raise ScheduleError(f"a schedule {schedule_id!r} exists already; delete it first") from err


async def create_reanalyze_schedule(
    client: Client,
    schedule_id: str,
    urls: list[str],
    *,
    every: timedelta,
    settings: Settings,
    jobs: JobOptions | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    webhook_url: str | None = None,
    queue_prefix: str | None = None,
    note: str = "",
) -> str:
    """Every `every`, a batch over the pages (the first one after `every`, or now with trigger)."""
    schedule_id = _check_id(schedule_id)
    if every < timedelta(minutes=1):
        raise ScheduleError("the interval is at least a minute")
    pages = check_pages(urls, settings)
    if webhook_url:
        try:
            webhook_url = validate_url(webhook_url, parse_allowed_hosts(settings.allowed_hosts))
        except GuardError as err:
            raise ScheduleError(f"webhook_url: {err}") from err
    prefix = queue_prefix or settings.queue_prefix
    batch = BatchInput(
        urls=pages,
        concurrency=concurrency,
        jobs=jobs or JobOptions(),
        webhook_url=webhook_url,
        source=f"schedule:{schedule_id}",
        queue_prefix=prefix,
        poll_seconds=settings.batch_poll_seconds,
    )
    await _create(
        client,
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                PagePerfectBatchWorkflow.run,
                batch,
                id=f"pageperfect-batch-{schedule_id}",
                task_queue=queue_name(prefix, WORKFLOW_QUEUE),
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
            # A batch still running when the next is due: skip that one rather than pile up.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note=note or f"re-analyze {len(pages)} pages every {_every(every)}"),
        ),
    )
    return schedule_id


async def create_gsc_import_schedule(
    client: Client,
    schedule_id: str,
    site_url: str,
    *,
    settings: Settings,
    hour: int = 6,
    minute: int = 0,
    days: int = 28,
    lag_days: int = 3,
    page: str | None = None,
    queue_prefix: str | None = None,
    note: str = "",
) -> str:
    """Daily at hour:minute UTC, the property's last `days` days (ending `lag_days` ago) into Postgres."""
    schedule_id = _check_id(schedule_id)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ScheduleError("the time of day is hour 0-23, minute 0-59 (UTC)")
    if not site_url.strip():
        raise ScheduleError("give the Search Console property: https://example.com/ or sc-domain:example.com")
    try:
        inp = GscImportInput(
            site_url=site_url.strip(),
            days=days,
            lag_days=lag_days,
            page=page,
            queue_prefix=queue_prefix or settings.queue_prefix,
        )
    except ValueError as err:
        raise ScheduleError(str(err).splitlines()[0] if str(err) else "bad input") from err
    await _create(
        client,
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                PagePerfectGscImportWorkflow.run,
                inp,
                id=f"pageperfect-gsc-{schedule_id}",
                task_queue=queue_name(inp.queue_prefix, WORKFLOW_QUEUE),
            ),
            spec=ScheduleSpec(
                calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])]
            ),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(
                note=note or f"import {inp.site_url}, {days} days, daily at {hour:02d}:{minute:02d} UTC"
            ),
        ),
    )
    return schedule_id


def _every(every: timedelta) -> str:
    if every % timedelta(days=1) == timedelta(0):
        days = every // timedelta(days=1)
        return f"{days} day" + ("s" if days != 1 else "")
    if every % timedelta(hours=1) == timedelta(0):
        return f"{every // timedelta(hours=1)} h"
    return f"{int(every.total_seconds() // 60)} min"


def _when(spec: ScheduleSpec) -> str:
    parts = [f"every {_every(i.every)}" for i in spec.intervals]
    for cal in spec.calendars:
        hour = cal.hour[0].start if cal.hour else 0
        minute = cal.minute[0].start if cal.minute else 0
        parts.append(f"daily at {hour:02d}:{minute:02d} UTC")
    return ", ".join(parts) or "on trigger only"


async def list_schedules(client: Client) -> list[ScheduleSummary]:
    """PagePerfect's schedules (those that start its workflows), by id."""
    found = []
    async for entry in await client.list_schedules():
        workflow_type = getattr(getattr(entry.schedule, "action", None), "workflow", None)
        if workflow_type not in KINDS or entry.schedule is None:
            continue
        info = entry.info
        found.append(
            ScheduleSummary(
                id=entry.id,
                kind=KINDS[workflow_type],
                when=_when(entry.schedule.spec),
                paused=entry.schedule.state.paused,
                note=entry.schedule.state.note or "",
                next_run=info.next_action_times[0] if info and info.next_action_times else None,
                last_run=info.recent_actions[-1].started_at if info and info.recent_actions else None,
            )
        )
    return sorted(found, key=lambda s: s.id)


async def _handle(client: Client, schedule_id: str):
    handle = client.get_schedule_handle(schedule_id)
    try:
        await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleError(f"no schedule {schedule_id!r}") from err
        raise
    return handle


async def pause(client: Client, schedule_id: str, note: str = "paused with pageperfect schedules pause") -> None:
    await (await _handle(client, schedule_id)).pause(note=note)


async def unpause(client: Client, schedule_id: str, note: str = "unpaused with pageperfect schedules unpause") -> None:
    await (await _handle(client, schedule_id)).unpause(note=note)


async def trigger(client: Client, schedule_id: str) -> None:
    """Run the schedule's action now (paused or not), as if it were due."""
    await (await _handle(client, schedule_id)).trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)


async def delete(client: Client, schedule_id: str) -> None:
    """The schedule goes; what it already started runs on."""
    await (await _handle(client, schedule_id)).delete()
