"""`pageperfect gsc`: Search Console data."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer

from pageperfect.cli.common import console, fail, settings

gsc_app = typer.Typer(help="Search Console data.", no_args_is_help=True)


@gsc_app.command("import")
def gsc_import(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Export ZIP, Queries.csv, or a page-and-query CSV"
    ),
    page: Optional[str] = typer.Option(None, "--page", help="The page the rows belong to (else Filters.csv's page)"),
    min_position: Optional[float] = typer.Option(None, help="Leave out queries ranking above this"),
    max_position: Optional[float] = typer.Option(None, help="Leave out queries ranking below this"),
    min_impressions: Optional[float] = typer.Option(None),
    min_clicks: Optional[float] = typer.Option(None),
    max_keywords: Optional[int] = typer.Option(None, help="Keep the first N after sorting"),
    sort_by: str = typer.Option("impressions", help="impressions, clicks or position"),
    brand: list[str] = typer.Option([], "--brand", help="A brand term whose queries are left out (repeatable)"),
    site_wide: bool = typer.Option(
        False,
        "--site-wide",
        help="The export is the whole site's (no page filter in Filters.csv) "
        "and its queries are meant for --page all the same",
    ),
) -> None:
    """Import a Search Console export into DATABASE_URL (else the embedded Postgres); the next job for that page uses its rows.

    Example: pageperfect gsc import ~/Downloads/Performance.zip --page https://example.com/blog/post --brand acme

    The formats read and every message: docs/SEARCH_CONSOLE.md.
    """
    from pydantic import ValidationError

    from db.pool import create_pool
    from pageperfect.models import KeywordFilters
    from pageperfect.runtime.backends import database
    from pageperfect.services.gsc_import import import_file

    try:
        filters = KeywordFilters(
            min_position=min_position,
            max_position=max_position,
            min_impressions=min_impressions,
            min_clicks=min_clicks,
            max_keywords=max_keywords,
            sort_by=sort_by,  # type: ignore[arg-type]  # pydantic checks the value
            brand_terms=brand,
        )
    except ValidationError as err:
        fail(f"bad filter: {err.errors()[0]['loc'][0]}: {err.errors()[0]['msg']}")

    async def run():
        async with database(settings()) as dsn:  # DATABASE_URL, else the embedded Postgres in the data dir
            pool = await create_pool(dsn)
            try:
                return await import_file(pool, file, page=page, filters=filters, site_wide=site_wide)
            finally:
                await pool.close()

    try:
        done = asyncio.run(run())
    except ValueError as err:
        fail(str(err))
    for url, count in done.counts.items():
        long = done.long_queries.get(url, 0)
        note = (
            (
                f" ({long} long or prompt-like quer{'y' if long == 1 else 'ies'}, left out of clustering unless "
                "a job sets include_long_queries)"
            )
            if long
            else ""
        )
        console.print(f"{count} rows for {url}{note}", markup=False)
