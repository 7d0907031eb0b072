"""import_search_console: the Search Analytics API's rows for a property, stored as a Search Console import."""

from __future__ import annotations

import asyncio
import contextlib
import json

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import permanent
from activities.runtime import resources
from db import queries
from pageperfect.sources.gsc import SearchAnalyticsClient, SearchConsoleError
from pageperfect.messages import GscImportRequest

SOURCE = "search-analytics-api"


def _credentials() -> dict:
    path = resources().settings.gsc_credentials_file
    if not path:
        raise permanent(
            "MissingCredentials",
            "PAGEPERFECT_GSC_CREDENTIALS is not set on the worker: point it at the service account's JSON key file",
        )
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise permanent(
            "MissingCredentials",
            f"the key file PAGEPERFECT_GSC_CREDENTIALS names cannot be read ({type(err).__name__})",
        ) from None
    except ValueError:
        raise permanent("MissingCredentials", "the key file PAGEPERFECT_GSC_CREDENTIALS names is not JSON") from None


async def _heartbeat_while(task: asyncio.Task, every: float = 20.0):
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()
        activity.heartbeat()


@activity.defn(name="import_search_console")
async def import_search_console(req: GscImportRequest) -> dict:
    settings = resources().settings
    try:
        client = SearchAnalyticsClient(settings.gsc_api_url, credentials=_credentials())
    except ValueError as err:  # the key file lacks a field; the message names it, never its value
        raise permanent("MissingCredentials", str(err)) from None
    try:
        async with client:
            query = asyncio.create_task(client.query(req.site_url, req.start_date, req.end_date, page=req.page))
            try:
                pages = await _heartbeat_while(query)
            finally:
                if not query.done():
                    query.cancel()
                    with contextlib.suppress(BaseException):
                        await query
    except SearchConsoleError as err:
        refused = err.status is not None and 400 <= err.status < 500 and err.status != 429
        raise ApplicationError(
            str(err), type="SearchConsoleRefused" if refused else "SearchConsoleError", non_retryable=refused
        ) from None
    date_range = f"{req.start_date}/{req.end_date}"
    async with resources().pool.acquire() as conn:
        async with conn.transaction():  # all pages or none
            for url, rows in pages.items():
                await queries.store_gsc_rows(conn, url, rows, date_range=date_range, source=SOURCE)
    return {
        "site_url": req.site_url,
        "date_range": date_range,
        "pages": len(pages),
        "rows": sum(len(rows) for rows in pages.values()),
        "skipped_rows": client.skipped_rows,
    }
