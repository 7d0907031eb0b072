"""Search Console uploads: the export ZIP, its Queries.csv, or a page-and-query CSV (docs/SEARCH_CONSOLE.md)."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile

from pydantic import ValidationError

from pageperfect.services.gsc_import import import_bytes
from pageperfect.models import KeywordFilters

router = APIRouter()


@router.post("/v1/gsc/import", summary="Import a Search Console export")
async def import_gsc(
    request: Request,
    file: UploadFile = File(..., description="Export ZIP, Queries.csv or page-and-query CSV"),
    page: str | None = Form(
        default=None, max_length=2048, description="The page the rows are for, where the file does not say"
    ),
    filters: str | None = Form(
        default=None,
        max_length=20_000,
        description='Keyword filters as JSON, e.g. {"min_impressions": 10, "brand_terms": ["acme"]}',
    ),
    site_wide: bool = Form(
        default=False,
        description="The export is the whole site's (no page filter) and its queries are meant for `page` all the same",
    ),
) -> dict:
    try:
        keyword_filters = KeywordFilters.model_validate_json(filters) if filters else None
    except ValidationError as err:
        raise HTTPException(422, f"filters: {err.errors()[0]['msg']}") from err
    data = await file.read()
    try:
        done = await import_bytes(
            request.app.state.pool,
            data,
            file.filename or "upload",
            page=page,
            filters=keyword_filters,
            site_wide=site_wide,
        )
    except ValueError as err:  # GscFormatError names the file, line and column
        raise HTTPException(422, str(err)) from err
    return {
        "imported": done.counts,
        "rows": done.rows,
        "long_queries": sum(done.long_queries.values()),
        "date_range": done.date_range,
    }
