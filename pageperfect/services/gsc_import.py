"""Search Console files into Postgres: one row per (date range, page, query)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from db import queries
from pageperfect.analysis.long_queries import count_long
from pageperfect.models import KeywordFilters, KeywordRow
from pageperfect.sources.gsc import apply_filters, pages_for_import, read_export
from pageperfect.sources.guard import GuardError, normalize_url


@dataclass
class GscImport:
    """What an import stored: rows per page, and how many of them are long or prompt-like queries."""

    counts: dict[str, int] = field(default_factory=dict)
    long_queries: dict[str, int] = field(default_factory=dict)
    date_range: str | None = None

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def rows_by_page(
    data: bytes, filename: str, page: str | None, *, site_wide: bool = False
) -> tuple[str | None, dict[str, list[KeywordRow]]]:
    """Parse an export ZIP, a Queries.csv or a page-and-query CSV; rows grouped by page URL.

    GscFormatError (a ValueError) says why the file cannot be read, or its rows not attributed to pages.
    """
    export = read_export(data, filename=filename)
    return export.date_range, pages_for_import(export, page, site_wide=site_wide)


async def import_bytes(
    pool: asyncpg.Pool,
    data: bytes,
    filename: str,
    *,
    page: str | None = None,
    filters: KeywordFilters | None = None,
    site_wide: bool = False,
) -> GscImport:
    def parse() -> tuple[str | None, dict[str, list[KeywordRow]], dict[str, int]]:
        date_range, grouped = rows_by_page(data, filename, page, site_wide=site_wide)
        if filters is not None:  # the old system's import filters: positions, minimums, brand terms, a cap
            grouped = {url: apply_filters(rows, filters) for url, rows in grouped.items()}
        return date_range, grouped, {url: count_long(r.query for r in rows) for url, rows in grouped.items()}

    # A million rows take seconds to read: off the event loop, so the API keeps answering meanwhile.
    date_range, grouped, long_counts = await asyncio.to_thread(parse)
    try:  # stored under the URL the intake writes, so the page's next job finds them
        grouped = {normalize_url(url): rows for url, rows in grouped.items()}
        long_counts = {normalize_url(url): count for url, count in long_counts.items()}
    except GuardError as err:
        raise ValueError(f"{filename}: {err}") from err
    outcome = GscImport(date_range=date_range, long_queries=long_counts)
    async with pool.acquire() as conn:
        async with conn.transaction():  # all pages or none
            for url, rows in grouped.items():
                outcome.counts[url] = await queries.store_gsc_rows(
                    conn, url, rows, date_range=date_range, source=filename
                )
    return outcome


async def import_file(
    pool: asyncpg.Pool,
    path: Path,
    *,
    page: str | None = None,
    filters: KeywordFilters | None = None,
    site_wide: bool = False,
) -> GscImport:
    return await import_bytes(
        pool, Path(path).read_bytes(), Path(path).name, page=page, filters=filters, site_wide=site_wide
    )
