"""Site intake, status and result: a site's pages as a batch of jobs, then the site stage (docs/SITE.md).

The intake refuses, storing and starting nothing, a site with no rows, with a single page, with
pages that are not on one site (another host: an unknown URL for this site), with URLs the crawl
may not fetch, and a Search Console property with no imported rows for the date range.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import Client

from db import queries
from pageperfect.messages import DEFAULT_CONCURRENCY, MAX_BATCH_PAGES, MAX_CONCURRENCY, SiteInput
from pageperfect.models import BatchStatus, JobOptions, KeywordRow
from pageperfect.services.batch_intake import BatchRequest, start_or_undo, store_batch
from pageperfect.services.intake import IntakeError
from pageperfect.settings import Settings
from pageperfect.sources.guard import GuardError, normalize_url
from workflows.site import PagePerfectSiteWorkflow, site_workflow_id

MIN_SITE_PAGES = 2


class PageQueryRow(KeywordRow):
    """One row of a page-and-query export: the page, then the query's numbers."""

    page: str = Field(min_length=1, max_length=2048)


class SearchConsoleRange(BaseModel):
    """A Search Console property's rows for a date range, as `pageperfect gsc` / the daily import stored them."""

    model_config = ConfigDict(extra="forbid")

    site_url: str = Field(
        min_length=1, max_length=2048, description="https://example.com/ (URL prefix) or sc-domain:example.com"
    )
    start_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    end_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")


class SiteRequest(JobOptions):
    """POST /v1/sites: the site's page-and-query rows (or a Search Console property and date range)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {
                            "page": "https://example.com/a",
                            "query": "cold brew ratio",
                            "clicks": 9,
                            "impressions": 150,
                            "ctr": 0.06,
                            "position": 3.2,
                        },
                        {
                            "page": "https://example.com/b",
                            "query": "cold brew ratio",
                            "clicks": 4,
                            "impressions": 120,
                            "ctr": 0.033,
                            "position": 5.1,
                        },
                    ]
                }
            ]
        },
    )

    rows: list[PageQueryRow] | None = Field(default=None, max_length=200_000)
    search_console: SearchConsoleRange | None = None
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY)

    @model_validator(mode="after")
    def _one_source(self) -> SiteRequest:
        if (self.rows is None) == (self.search_console is None):
            raise ValueError("give either rows or search_console")
        return self


@dataclass
class CreatedSite:
    site_id: str
    batch_id: str
    workflow_id: str
    run_id: str
    pages: int


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def check_site_pages(grouped: dict[str, list[KeywordRow]], *, what: str = "the file") -> dict[str, list[KeywordRow]]:
    """The pages normalised; a 422 for no rows, one page, or pages of more than one site."""
    grouped = {url: rows for url, rows in grouped.items() if rows}
    if not grouped:
        raise IntakeError(422, f"{what} has no page-and-query rows")
    normalized: dict[str, list[KeywordRow]] = {}
    for url, rows in grouped.items():
        try:
            normalized.setdefault(normalize_url(url), []).extend(rows)
        except GuardError as err:
            raise IntakeError(422, f"{what}: page {url[:100]!r}: {err}") from err
    if len(normalized) < MIN_SITE_PAGES:
        raise IntakeError(
            422,
            f"{what} has rows for {len(normalized)} page; a site analysis needs at least "
            f"{MIN_SITE_PAGES} pages of one site",
        )
    if len(normalized) > MAX_BATCH_PAGES:
        raise IntakeError(422, f"{what} has {len(normalized)} pages; at most {MAX_BATCH_PAGES}")
    hosts: dict[str, int] = {}
    for url in normalized:
        hosts[_host(url)] = hosts.get(_host(url), 0) + 1
    if len(hosts) > 1:
        main = max(hosts, key=lambda h: hosts[h])
        strangers = [u for u in normalized if _host(u) != main]
        raise IntakeError(
            422, f"{what}: {len(strangers)} pages are not on {main}, the site's host: " + ", ".join(strangers[:3])
        )
    return normalized


def property_scope(site_url: str) -> tuple[str | None, str | None]:
    """(URL prefix, domain) of a Search Console property."""
    if site_url.startswith("sc-domain:"):
        return None, site_url.removeprefix("sc-domain:").strip().lower()
    try:
        return normalize_url(site_url), None
    except GuardError as err:
        raise IntakeError(422, f"search_console.site_url: {err}") from err


async def rows_for(request: SiteRequest, pool: asyncpg.Pool) -> dict[str, list[KeywordRow]]:
    if request.search_console is not None:
        sc = request.search_console
        prefix, domain = property_scope(sc.site_url)
        stored = await queries.site_gsc_rows(pool, prefix, domain, f"{sc.start_date}/{sc.end_date}")
        if not stored:
            raise IntakeError(
                422,
                f"no Search Console rows are stored for {sc.site_url} from {sc.start_date} to "
                f"{sc.end_date}: import them first (a Search Console import schedule, "
                "`pageperfect schedules create`, stores them)",
            )
        return check_site_pages(stored, what=f"the property {sc.site_url}")
    grouped: dict[str, list[KeywordRow]] = {}
    for row in request.rows or []:
        grouped.setdefault(row.page, []).append(KeywordRow.model_validate(row.model_dump(exclude={"page"})))
    return check_site_pages(grouped, what="rows")


async def create_site(
    request: SiteRequest,
    *,
    pool: asyncpg.Pool,
    client: Client,
    settings: Settings,
    queue_prefix: str | None = None,
    source: str = "api",
    grouped: dict[str, list[KeywordRow]] | None = None,
) -> CreatedSite:
    """Stores the site's pages as a batch and starts the site workflow; refuses bad input storing nothing."""
    grouped = grouped if grouped is not None else await rows_for(request, pool)
    batch = BatchRequest(
        urls=list(grouped),
        keywords=grouped,
        concurrency=request.concurrency,
        **request.model_dump(include=set(JobOptions.model_fields)),
    )
    stored = await store_batch(batch, pool=pool, settings=settings, source="site", keyword_source=f"site:{source}")
    site_id = str(uuid.uuid4())
    workflow_id = site_workflow_id(site_id)
    prefix = queue_prefix or settings.queue_prefix
    await queries.insert_site(
        pool,
        site_id,
        batch_id=stored.batch_id,
        source=source,
        pages=len(stored.pages),
        options=stored.jobs.model_dump(mode="json"),
        workflow_id=workflow_id,
    )
    site = SiteInput(
        site_id=site_id,
        batch_id=stored.batch_id,
        concurrency=request.concurrency,
        jobs=stored.jobs,
        queue_prefix=prefix,
        poll_seconds=settings.batch_poll_seconds,
    )

    async def undo() -> None:
        await queries.delete_site(pool, site_id)
        await queries.delete_batch(pool, stored.batch_id)

    run_id = await start_or_undo(client, PagePerfectSiteWorkflow.run, site, workflow_id, prefix, "site", undo)
    await queries.set_site_run(pool, site_id, run_id)
    return CreatedSite(site_id, stored.batch_id, workflow_id, run_id, len(stored.pages))


async def site_status(pool: asyncpg.Pool, site_id: str) -> dict[str, Any] | None:
    site = await queries.get_site(pool, site_id)
    if site is None:
        return None
    counts = await queries.batch_counts(pool, str(site["batch_id"])) if site["batch_id"] else {}
    stats = site["stats"] or {}
    return {
        "site_id": str(site["id"]),
        "status": site["status"],
        "stage": site["stage"],
        "source": site["source"],
        "batch_id": str(site["batch_id"]) if site["batch_id"] else None,
        "workflow_id": site["workflow_id"],
        "run_id": site["run_id"],
        "error": site["error"],
        "counts": {
            "pages": site["pages"],
            "jobs": counts,
            "cases": stats.get("cases"),
            "links": stats.get("links"),
            "site_intents": stats.get("site_intents"),
        },
        "created_at": site["created_at"],
        "completed_at": site["completed_at"],
    }


async def site_result(pool: asyncpg.Pool, site_id: str) -> dict[str, Any]:
    """GET /v1/sites/{id}/result: pages by opportunity, cannibalization cases, link suggestions; from the tables."""
    site = await queries.get_site(pool, site_id)
    if site is None:
        raise IntakeError(404, f"no site {site_id}")
    if site["status"] != BatchStatus.COMPLETED:
        detail = f": {site['error']}" if site["error"] else ""
        raise IntakeError(
            409,
            f"site {site_id} is {site['status']} (stage {site['stage']}){detail}; "
            "its result comes when it has completed",
        )
    rows = await queries.site_result_rows(pool, site_id)
    by_case: dict[int, list] = {}
    for p in rows["case_pages"]:
        by_case.setdefault(p["case_id"], []).append(
            {
                "url": p["url"],
                "job_id": str(p["job_id"]) if p["job_id"] else None,
                "impressions": p["impressions"],
                "clicks": p["clicks"],
                "position": p["position_avg"],
                "impression_share": p["impression_share"],
                "click_share": p["click_share"],
                "queries": list(p["queries"]),
                "passage": p["passage"],
                "passage_cosine": p["passage_cosine"],
            }
        )
    matrix: dict[int, dict] = {}
    for r in rows["intents"]:
        matrix.setdefault(r["intent_id"], {"intent_id": r["intent_id"], "intent": r["intent"], "pages": {}})["pages"][
            r["url"]
        ] = r["impressions"]
    return {
        "site_id": site_id,
        "status": site["status"],
        "stats": site["stats"],
        "pages": [
            {
                "url": p["url"],
                "job_id": str(p["job_id"]) if p["job_id"] else None,
                "coverage": p["coverage"],
                "queries": p["queries"],
                "impressions": p["impressions"],
                "gaps": p["gaps"],
                "opportunity": p["opportunity"],
                "top_gaps": p["top_gaps"],
            }
            for p in rows["pages"]
        ],
        "cannibalization": [
            {
                "intent": c["intent"],
                "queries": list(c["queries"]),
                "pages": by_case.get(c["case_id"], []),
                "total_impressions": c["total_impressions"],
                "evenness": c["evenness"],
                "severity": c["severity"],
                "recommendation": c["recommendation"],
                "reasons": list(c["reasons"]),
            }
            for c in rows["cases"]
        ],
        "links": [
            {
                "from_url": x["from_url"],
                "intent": x["intent"],
                "queries": list(x["queries"]),
                "to_url": x["to_url"],
                "to_segment_id": x["to_segment_id"],
                "anchor_text": x["anchor_text"],
                "passage": x["passage"],
                "coverage": x["coverage"],
                "original_score": x["original_score"],
                "score": x["score"],
                "reason": x["reason"],
                "brief": x["brief"],
                "from_job_id": str(x["from_job_id"]) if x["from_job_id"] else None,
                "to_job_id": str(x["to_job_id"]) if x["to_job_id"] else None,
            }
            for x in rows["links"]
        ],
        "intents": sorted(matrix.values(), key=lambda i: -sum(i["pages"].values())),
    }
