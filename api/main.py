"""`uvicorn api.main:app`: the API against TEMPORAL_ADDRESS and DATABASE_URL, migrating at start."""

from __future__ import annotations

from api.app import create_app

app = create_app(migrate_on_start=True)
