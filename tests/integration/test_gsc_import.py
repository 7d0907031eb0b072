"""Search Console imports: the next job for the page uses the imported rows."""

from __future__ import annotations

from tests.conftest import DEMO


async def test_uploaded_export_feeds_the_next_job(pipeline, site, pool):
    url = site.add("/imported.html", site.handler.routes["/index.html"][2])
    response = await pipeline.http.post(
        "/v1/gsc/import",
        data={"page": url},
        files={"file": ("Queries.csv", (DEMO / "queries.csv").read_bytes(), "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 50
    again = await pipeline.http.post(
        "/v1/gsc/import",
        data={"page": url},
        files={"file": ("Queries.csv", (DEMO / "queries.csv").read_bytes(), "text/csv")},
    )
    assert again.status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM gsc_keywords WHERE page_url = $1", url) == 50  # no duplicates

    created = await pipeline.submit(url=url)  # no inline keywords: the import is used
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed"
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["stats"]["keywords"] == 50 and result["stats"]["gaps"] > 0


async def test_broken_upload_is_refused_with_line_and_column(pipeline, pool):
    before = await pool.fetchval("SELECT count(*) FROM gsc_keywords")
    broken = b'Top queries,Clicks,Impressions,CTR,Position\nfig care,3,"1,234",1%,4.2\n'
    response = await pipeline.http.post(
        "/v1/gsc/import", data={"page": "https://example.com/a"}, files={"file": ("Queries.csv", broken, "text/csv")}
    )
    assert response.status_code == 422
    assert "line 2" in response.json()["detail"] and "Impressions" in response.json()["detail"]
    missing_page = await pipeline.http.post(
        "/v1/gsc/import", files={"file": ("Queries.csv", (DEMO / "queries.csv").read_bytes(), "text/csv")}
    )
    assert missing_page.status_code == 422 and "--page" in missing_page.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM gsc_keywords") == before


def _cli(*args: str, dsn: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": dsn}
    return subprocess.run(
        [sys.executable, "-m", "pageperfect.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_cli_import_applies_the_filters(pool, postgres_dsn, tmp_path):
    import asyncio

    url = "https://example.com/blog/filtered-import"
    done = await asyncio.to_thread(
        _cli,
        "gsc",
        "import",
        str(DEMO / "queries.csv"),
        "--page",
        url,
        "--brand",
        "ficus",
        "--max-keywords",
        "10",
        dsn=postgres_dsn,
    )
    assert done.returncode == 0, done.stderr
    assert f"10 rows for {url}" in done.stdout
    queries = {r["query"] for r in await pool.fetch("SELECT query FROM gsc_keywords WHERE page_url = $1", url)}
    assert len(queries) == 10 and not any("ficus" in q for q in queries)

    broken = tmp_path / "Queries.csv"
    broken.write_text("Top queries,Clicks,Impressions,CTR,Position\nfig,1,2,1%,zero\n")
    done = await asyncio.to_thread(_cli, "gsc", "import", str(broken), "--page", url, dsn=postgres_dsn)
    assert done.returncode == 1 and "line 2" in done.stderr and "Traceback" not in done.stderr
