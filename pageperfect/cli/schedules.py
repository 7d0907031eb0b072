"""`pageperfect schedules`: the recurring re-analyses and Search Console imports.

Talks to Temporal directly (TEMPORAL_ADDRESS, else the embedded server of the running `pageperfect up`),
like `temporal schedule`, which works on them too.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pageperfect.cli.common import console, fail, finish, settings, temporal_client

schedules_app = typer.Typer(
    help="Recurring work as Temporal Schedules: re-analyze pages every N days, import Search Console data daily.",
    no_args_is_help=True,
)


def _run(work):
    """Run work(client) against Temporal; a bad input or a missing schedule is a one-line error."""
    from pageperfect.services.schedules import ScheduleError

    async def go():
        try:
            client = await temporal_client()
        except Exception as err:  # nothing listening, TLS refused
            fail(f"Temporal did not answer ({err}); set TEMPORAL_ADDRESS or start `pageperfect up`")
        return await work(client)

    try:
        return asyncio.run(go())
    except ScheduleError as err:
        fail(str(err))


def _time_of_day(value: str) -> tuple[int, int]:
    try:
        hour, minute = (int(part) for part in value.split(":"))
    except ValueError:
        fail(f"--at takes HH:MM in UTC, not {value!r}")
    return hour, minute


@schedules_app.command("create")
def create(
    schedule_id: str = typer.Argument(..., help="A name for the schedule, e.g. weekly-blog"),
    reanalyze: Optional[Path] = typer.Option(
        None, "--reanalyze", exists=True, dir_okay=False, help="Re-analyze the pages in this file (one URL a line)"
    ),
    every_days: int = typer.Option(7, "--every-days", min=1, max=366, help="With --reanalyze: how often"),
    concurrency: int = typer.Option(5, "--concurrency", "-c", min=1, max=50),
    force_update: bool = typer.Option(False, "--force-update", help="Run every stage again each time"),
    webhook_url: Optional[str] = typer.Option(None, "--webhook-url", help="Signed POST when each batch ends"),
    gsc_site: Optional[str] = typer.Option(
        None,
        "--gsc-site",
        help="Import this Search Console property daily (https://example.com/ or sc-domain:example.com)",
    ),
    at: str = typer.Option("06:00", "--at", help="With --gsc-site: time of day, HH:MM UTC"),
    days: int = typer.Option(28, "--days", min=1, max=480, help="With --gsc-site: days of data each time"),
    page: Optional[str] = typer.Option(None, "--page", help="With --gsc-site: only this page's rows"),
) -> None:
    """Create a schedule: --reanalyze FILE [--every-days 7], or --gsc-site PROPERTY [--at 06:00].

    Examples: pageperfect schedules create weekly-blog --reanalyze pages.txt --every-days 7 ;
    pageperfect schedules create gsc-daily --gsc-site sc-domain:example.com --at 05:30
    """
    from pageperfect.services import schedules
    from pageperfect.cli.batch import read_url_list
    from pageperfect.models import JobOptions

    if bool(reanalyze) == bool(gsc_site):
        fail("give one of --reanalyze FILE or --gsc-site PROPERTY")
    run_settings = settings()
    if reanalyze:
        urls = read_url_list(reanalyze.read_bytes())
        made = _run(
            lambda client: schedules.create_reanalyze_schedule(
                client,
                schedule_id,
                urls,
                every=timedelta(days=every_days),
                settings=run_settings,
                jobs=JobOptions(force_update=force_update),
                concurrency=concurrency,
                webhook_url=webhook_url,
            )
        )
        console.print(
            f"schedule {made}: re-analyzes {len(set(urls))} pages every {every_days} day(s); "
            f"`pageperfect schedules trigger {made}` runs it now"
        )
    else:
        assert gsc_site is not None  # one of the two, checked above
        hour, minute = _time_of_day(at)
        made = _run(
            lambda client: schedules.create_gsc_import_schedule(
                client, schedule_id, gsc_site, settings=run_settings, hour=hour, minute=minute, days=days, page=page
            )
        )
        console.print(
            f"schedule {made}: imports {gsc_site} daily at {hour:02d}:{minute:02d} UTC "
            "(the worker reads the key file PAGEPERFECT_GSC_CREDENTIALS names)"
        )
    finish(0)


@schedules_app.command("list")
def list_() -> None:
    """PagePerfect's schedules: what they do, when, and whether they are paused."""
    from pageperfect.services import schedules

    found = _run(schedules.list_schedules)
    table = Table("schedule", "kind", "when", "paused", "next run", "last run", "note")
    for s in found:
        table.add_row(
            s.id,
            s.kind,
            s.when,
            "yes" if s.paused else "",
            s.next_run.isoformat()[:16] if s.next_run else "",
            s.last_run.isoformat()[:16] if s.last_run else "",
            s.note[:60],
        )
    console.print(table)
    finish(0)


def _act(work, done: str) -> None:
    """One change to a schedule: run it, say what was done, exit."""
    _run(work)
    console.print(done)
    finish(0)


@schedules_app.command("pause")
def pause(schedule_id: str, note: str = typer.Option("paused with pageperfect schedules pause", "--note")) -> None:
    """Stop a schedule from starting anything until unpaused."""
    from pageperfect.services import schedules

    _act(lambda client: schedules.pause(client, schedule_id, note), f"paused {schedule_id}")


@schedules_app.command("unpause")
def unpause(schedule_id: str) -> None:
    """Let a paused schedule run again."""
    from pageperfect.services import schedules

    _act(lambda client: schedules.unpause(client, schedule_id), f"unpaused {schedule_id}")


@schedules_app.command("trigger")
def trigger(schedule_id: str) -> None:
    """Run a schedule's work now, once (also when paused)."""
    from pageperfect.services import schedules

    _act(lambda client: schedules.trigger(client, schedule_id), f"triggered {schedule_id}")


@schedules_app.command("delete")
def delete(schedule_id: str) -> None:
    """Delete a schedule; what it started already runs on."""
    from pageperfect.services import schedules

    _act(lambda client: schedules.delete(client, schedule_id), f"deleted {schedule_id}")
