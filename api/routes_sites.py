"""Sites: a site's pages analysed as a batch, then cannibalization cases and links across them (docs/SITE.md)."""

from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from temporalio.client import WorkflowExecutionStatus

from api.lookup import accepted, intake_context, cancel_running
from db import queries
from pageperfect.models import BatchStatus
from pageperfect.services.report import CSP
from pageperfect.services.site_report import render_site_report
from pageperfect.services.sites import SiteRequest, check_site_pages, create_site, site_result, site_status
from pageperfect.sources.gsc import GscFormatError, parse_page_query_csv

router = APIRouter()


def _inlined(schema: dict) -> dict:
    """A model's JSON schema with its `$defs` references written in place: the route reads its body itself,
    so FastAPI does not put the models it refers to among the document's components."""
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": _inlined(SiteRequest.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with the columns page, query, clicks, impressions, ctr, position",
                        },
                        "options": {"type": "string", "description": "The other SiteRequest fields as JSON"},
                    },
                }
            },
        }
    }
}


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"


@router.post(
    "/v1/sites",
    status_code=202,
    summary="Analyse a site: its pages, then cannibalization and links",
    openapi_extra=_BODY,
    responses={422: {"description": "Bad input (the message says what and where); nothing is stored or started"}},
)
async def create_site_route(request: Request) -> JSONResponse:
    """JSON rows (or a Search Console property and date range), or a page-and-query CSV upload."""
    grouped = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "file: a page-and-query CSV is required")
        options = form.get("options")
        try:
            body = SiteRequest.model_validate({**json.loads(options if isinstance(options, str) else "{}"), "rows": []})
        except (ValidationError, ValueError) as err:
            why = _first_error(err) if isinstance(err, ValidationError) else str(err)
            raise HTTPException(422, f"options: {why}") from err
        name = upload.filename or "upload.csv"
        try:
            parsed = parse_page_query_csv(await upload.read(), source=name)
        except GscFormatError as err:  # names the file, the line and the column
            raise HTTPException(422, str(err)) from err
        grouped = check_site_pages(parsed, what=name)
        source = "csv"
    else:
        try:
            body = SiteRequest.model_validate_json(await request.body())
        except ValidationError as err:
            raise HTTPException(422, _first_error(err)) from err
        source = "gsc" if body.search_console else "api"
    created = await create_site(body, **intake_context(request), source=source, grouped=grouped)
    return accepted(request, {"site_id": created.site_id, "batch_id": created.batch_id}, created, "get_site")


@router.get("/v1/sites/{site_id}", name="get_site", summary="A site analysis: its status and counts")
async def get_site(site_id: uuid.UUID, request: Request) -> dict:
    state = request.app.state
    body = await site_status(state.pool, str(site_id))
    if body is None:
        raise HTTPException(404, f"no site {site_id}")
    if body["status"] == BatchStatus.RUNNING:
        try:
            handle = state.client.get_workflow_handle(body["workflow_id"])
            body["progress"] = await handle.query("progress")
            described = await handle.describe()
            if described.status in (WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT):
                await queries.finalize_site(
                    state.pool,
                    site_id=str(site_id),
                    status=BatchStatus.FAILED,
                    stage=body["stage"],
                    error=f"the site's workflow was {described.status.name.lower()}",
                    workflow_id=body["workflow_id"],
                    run_id=body["run_id"] or "",
                )
                body = await site_status(state.pool, str(site_id)) or body
        except Exception:  # noqa: BLE001 - Temporal away or the run not visible yet: the row is the answer
            pass
    return jsonable_encoder(body)


@router.get("/v1/sites/{site_id}/result", summary="The site's pages by opportunity, cannibalization cases, links")
async def get_site_result(site_id: uuid.UUID, request: Request) -> dict:
    return jsonable_encoder(await site_result(request.app.state.pool, str(site_id)))


@router.get("/v1/sites/{site_id}/report", response_class=HTMLResponse, summary="The site report as an HTML page")
async def get_site_report(site_id: uuid.UUID, request: Request) -> HTMLResponse:
    """Self-contained: inline styles and SVG, nothing loaded from anywhere."""
    result = await site_result(request.app.state.pool, str(site_id))
    page = await asyncio.to_thread(render_site_report, result)
    return HTMLResponse(
        page,
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"},
    )


@router.post("/v1/sites/{site_id}/cancel", status_code=202, summary="Cancel a site analysis and its page jobs")
async def cancel_site(site_id: uuid.UUID, request: Request) -> dict:
    return await cancel_running(request, "site", site_id, await queries.get_site(request.app.state.pool, str(site_id)))
