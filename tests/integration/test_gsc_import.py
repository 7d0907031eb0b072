"""Search Console imports: the next job for the page uses the imported rows."""

from __future__ import annotations

from tests.conftest import DEMO


async def test_uploaded_export_feeds_the_next_job(pipeline, site, pool):
    url = site.add("/imported.html", site.handler.routes["/index.html"][2])
    response = await pipeline.http.post(
        "/v1/gsc/import", data={"page": url},
        files={"file": ("Queries.csv", (DEMO / "queries.csv").read_bytes(), "text/csv")})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 50
    again = await pipeline.http.post(
        "/v1/gsc/import", data={"page": url},
        files={"file": ("Queries.csv", (DEMO / "queries.csv").read_bytes(), "text/csv")})
    assert again.status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM gsc_keywords WHERE page_url = $1", url) == 50  # no duplicates

    created = await pipeline.submit(url=url)  # no inline keywords: the import is used
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed"
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["stats"]["keywords"] == 50 and result["stats"]["gaps"] > 0


async def test_broken_upload_is_refused_with_line_and_column(pipeline, pool):
    before = await pool.fetchval("SELECT count(*) FROM gsc_keywords")
    broken = b"Top queries,Clicks,Impressions,CTR,Position\nfig care,3,\"1,234\",1%,4.2\n"
    response = await pipeline.http.post("/v1/gsc/import", data={"page": "https://example.com/a"},
                                        files={"file": ("Queries.csv", broken, "text/csv")})
    assert response.status_code == 422
    assert "line 2" in response.json()["detail"] and "Impressions" in response.json()["detail"]
    missing_page = await pipeline.http.post("/v1/gsc/import",
                                            files={"file": ("Queries.csv", (DEMO / "queries.csv").read_bytes(), "text/csv")})
    assert missing_page.status_code == 422 and "--page" in missing_page.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM gsc_keywords") == before
