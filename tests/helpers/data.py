"""Inputs the tests share: the demo's Search Console rows, pages on the test site, ZIP exports."""

from __future__ import annotations

import io
import zipfile

from pageperfect.sources.gsc import parse_queries_csv
from tests.helpers.settings import DEMO


def demo_keywords() -> list[dict]:
    rows = parse_queries_csv((DEMO / "queries.csv").read_bytes())
    return [r.model_dump() for r in rows]


def pages(site, prefix: str, count: int) -> list[str]:
    body = site.handler.routes["/index.html"][2]
    return [site.add(f"/{prefix}-{i}.html", body) for i in range(count)]


def make_zip(files: dict[str, str | bytes]) -> bytes:
    """A ZIP archive of these files (name -> content), as Search Console's export download is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()
