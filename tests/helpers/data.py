"""Inputs the tests share: the demo's Search Console rows, pages on the test site."""

from __future__ import annotations

from pageperfect.sources.gsc import parse_queries_csv
from tests.helpers.settings import DEMO


def demo_keywords() -> list[dict]:
    rows = parse_queries_csv((DEMO / "queries.csv").read_bytes())
    return [r.model_dump() for r in rows]


def pages(site, prefix: str, count: int) -> list[str]:
    body = site.handler.routes["/index.html"][2]
    return [site.add(f"/{prefix}-{i}.html", body) for i in range(count)]
