"""`pageperfect dead-letters`: the jobs that failed; list them (through the API), run one again."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from pageperfect.cli.common import api_call, console, fail, finish, with_backends

dead_app = typer.Typer(help="Jobs that failed: list them, run them again.", no_args_is_help=True)


@dead_app.command("list")
def dead_letters_list(limit: int = typer.Option(50)) -> None:
    """Failed jobs, newest first. Example: pageperfect dead-letters list --limit 20"""
    rows = api_call("GET", "/v1/dead-letters", params={"limit": limit})
    table = Table("id", "job", "stage", "attempts", "reason", "routed at")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["job_id"],
            row["stage"] or "",
            str(row["attempt_count"]),
            row["failure_reason"][:80],
            row["routed_at"][:19],
        )
    console.print(table)


@dead_app.command("redrive")
def dead_letters_redrive(dead_letter_id: int) -> None:
    """Run a failed job again; the stages it completed are reused, not run again.

    Example: pageperfect dead-letters redrive 17 (the id from `dead-letters list`)
    """
    from pageperfect.services.redrive import redrive

    async def work(pool, client, settings):
        return await redrive(dead_letter_id, pool=pool, client=client)

    try:
        submitted = asyncio.run(with_backends(work))
    except LookupError as err:
        fail(str(err))
    console.print(f"redriven as job {submitted.job_id} (workflow {submitted.workflow_id})")
    finish(0)
