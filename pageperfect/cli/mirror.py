"""`pageperfect mirror`: the Postgres mirror of Temporal history."""

from __future__ import annotations

import asyncio
from typing import Optional

import typer

from pageperfect.cli.common import console, finish, with_backends

mirror_app = typer.Typer(help="The Postgres mirror of Temporal history.", no_args_is_help=True)


@mirror_app.command("reconcile")
def mirror_reconcile(
    job_id: Optional[str] = typer.Argument(None, help="One job; all jobs of the last day without it"),
    check: bool = typer.Option(False, "--check", help="Only report differences; exit 1 if any"),
) -> None:
    """Rebuild the mirror's job and stage rows from Temporal history.

    Example: pageperfect mirror reconcile --check (exit 1 if a row differs from history)
    """
    from pageperfect.services.reconcile import reconcile

    async def work(pool, client, settings):
        return await reconcile(pool, client, job_id=job_id, write=not check)

    differences = asyncio.run(with_backends(work))
    for line in differences:
        console.print(line)
    console.print(f"{len(differences)} difference(s)" + ("" if check else " repaired"))
    finish(1 if check and differences else 0)
