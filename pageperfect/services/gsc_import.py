"""Search Console files into Postgres: one row per (date range, page, query)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from db import queries
from pageperfect.models import KeywordFilters
from pageperfect.sources.gsc import apply_filters, parse_page_query_csv, read_export
from pageperfect.sources.guard import GuardError, normalize_url

PAGE_QUERY_HEADER = "page,query"


def rows_by_page(data: bytes, filename: str, page: str | None) -> tuple[str | None, dict]:
    """Parse an export ZIP, a Queries.csv or a page-and-query CSV; rows grouped by page URL."""
    head = data[:200].decode("utf-8", "replace").lstrip("\ufeff").lower().replace(" ", "")
    if head.startswith(PAGE_QUERY_HEADER):
        return None, parse_page_query_csv(data, source=filename)
    export = read_export(data, filename=filename)
    target = page or export.page
    if not target:
        raise ValueError(f"{filename} does not say which page its rows are for: name it (--page URL, or the page field of the upload)")
    return export.date_range, {target: export.rows}


async def import_bytes(pool: asyncpg.Pool, data: bytes, filename: str, *, page: str | None = None,
                       filters: KeywordFilters | None = None) -> dict[str, int]:
    date_range, grouped = rows_by_page(data, filename, page)
    if filters is not None:  # the old system's import filters: positions, minimums, brand terms, a cap
        grouped = {url: apply_filters(rows, filters) for url, rows in grouped.items()}
    counts = {}
    try:  # stored under the URL the intake writes, so the page's next job finds them
        grouped = {normalize_url(url): rows for url, rows in grouped.items()}
    except GuardError as err:
        raise ValueError(f"{filename}: {err}") from err
    async with pool.acquire() as conn:
        async with conn.transaction():  # all pages or none
            for url, rows in grouped.items():
                counts[url] = await queries.store_gsc_rows(conn, url, rows, date_range=date_range, source=filename)
    return counts


async def import_file(pool: asyncpg.Pool, path: Path, *, page: str | None = None,
                      filters: KeywordFilters | None = None) -> dict[str, int]:
    return await import_bytes(pool, Path(path).read_bytes(), Path(path).name, page=page, filters=filters)
