"""`pageperfect prune`: delete the artifacts and vectors of old jobs (pageperfect.ops.prune)."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from pageperfect.cli.common import console, examples, finish, with_database

prune_app = typer.Typer()


@prune_app.command(
    "prune", epilog=examples("pageperfect prune --older-than 30 --dry-run", "pageperfect prune --older-than 90")
)
def prune(
    older_than: float = typer.Option(
        ..., "--older-than", min=0, metavar="DAYS", help="Delete what is older than this many days"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing"),
) -> None:
    """Delete old jobs' crawled HTML, segments and their vectors, clusters, gap reports, drafts, unused keyword sets, and embedding cache rows no job has read since.

    Kept whatever their age: each page's latest artifact of each stage, everything of a page whose job has not ended, and the job, stage and event rows and dead letters. Uses DATABASE_URL, else the embedded Postgres of the data dir.
    """
    from pageperfect.ops.prune import prune as run_prune

    report = asyncio.run(with_database(lambda pool: run_prune(pool, older_than_days=older_than, dry_run=dry_run)))
    table = Table("table", "rows " + ("that would go" if report.dry_run else "deleted"))
    for name, count in report.removed.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    verb = "would delete" if report.dry_run else "deleted"
    console.print(
        f"{verb} {report.total:,} rows older than {report.cutoff:%Y-%m-%d %H:%M} UTC"
        + (" (dry run: nothing was deleted)" if report.dry_run else "")
    )
    finish(0)
