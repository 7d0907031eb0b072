"""Search Console uploads: the export ZIP, its Queries.csv, or a page-and-query CSV."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile

from pageperfect.gsc_import import import_bytes

router = APIRouter()


@router.post("/v1/gsc/import", summary="Import a Search Console export")
async def import_gsc(request: Request, file: UploadFile = File(..., description="Export ZIP, Queries.csv or page-and-query CSV"),
                     page: str | None = Form(default=None, max_length=2048,
                                             description="The page the rows are for, where the file does not say")) -> dict:
    data = await file.read()
    try:
        counts = await import_bytes(request.app.state.pool, data, file.filename or "upload", page=page)
    except ValueError as err:  # GscFormatError names the file, line and column
        raise HTTPException(422, str(err)) from err
    return {"imported": counts, "rows": sum(counts.values())}
