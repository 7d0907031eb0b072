"""Search Console exports as they really come, through the upload endpoint and the CLI alike (one reader):
long prompts kept whole and left out of clustering, other delimiters and encodings, page-and-query files under
other headers, empty exports, ZIP names with colons, site-wide exports. Fixtures are made here."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid

import pytest

from pageperfect.analysis.embeddings import text_hash
from pageperfect.analysis.long_queries import embedding_text
from tests.conftest import DEMO
from tests.helpers.data import make_zip

HEADER = ["Top queries", "Clicks", "Impressions", "CTR", "Position"]


def csv_text(rows: list[list[str]], delimiter: str = ",") -> str:
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in (delimiter, '"', "\n")) else value

    return "".join(delimiter.join(cell(v) for v in row) + "\r\n" for row in rows)


def prompt(words: int = 400, seed: int = 1) -> str:
    """A prompt-like query of random words: long enough (and incompressible enough) to overflow a B-tree key."""
    rng = random.Random(seed)
    tail = " ".join(
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(words)
    )
    return "i'm in my mid-50s with a modest income, how does this compare " + tail


def page_url() -> str:
    return f"https://example.com/blog/{uuid.uuid4().hex[:10]}"


async def upload(pipeline, data: bytes, filename: str, **form):
    return await pipeline.http.post(
        "/v1/gsc/import",
        data={k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
        files={"file": (filename, data, "application/octet-stream")},
    )


async def cli(tmp_path, dsn: str, data: bytes, filename: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{uuid.uuid4().hex[:6]}-{filename}"
    path.write_bytes(data)
    env = {**os.environ, "DATABASE_URL": dsn}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pageperfect.cli", "gsc", "import", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def stored(pool, url: str) -> dict[str, float]:
    return {
        r["query"]: r["clicks"]
        for r in await pool.fetch("SELECT query, clicks FROM gsc_keywords WHERE page_url = $1", url)
    }


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


# --------------------------------------------------------------------------- 1. long queries


async def test_case1_a_long_prompt_is_stored_whole_counted_and_left_out_of_clustering(
    pipeline, pool, site, postgres_dsn, tmp_path
):
    long_query = prompt()
    assert len(long_query) > 2700  # more than a B-tree key holds
    demo = (DEMO / "queries.csv").read_text()
    cut = long_query.index(" ", 500)  # the UI wraps a long query over lines
    wrapped = long_query[:cut] + "\n" + long_query[cut + 1 :]
    data = (demo.rstrip("\n") + "\n" + csv_text([[wrapped, "2", "30", "6.67%", "4.2"]])).encode()
    url = site.add(f"/long-{uuid.uuid4().hex[:6]}.html", site.handler.routes["/index.html"][2])
    response = await upload(pipeline, data, "Queries.csv", page=url)
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 51 and response.json()["long_queries"] == 1
    assert long_query in await stored(pool, url)

    other = page_url()
    done = await cli(tmp_path, postgres_dsn, data, "Queries.csv", "--page", other)
    assert done.returncode == 0, done.stderr
    assert (
        f"51 rows for {other} (1 long or prompt-like query, left out of clustering unless a job sets "
        "include_long_queries)" in done.stdout
    )
    assert long_query in await stored(pool, other)

    created = await pipeline.submit(url=url)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed", job
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["stats"]["keywords"] == 50 and result["stats"]["long_queries"] == 1
    assert result["long_queries"] == {"included": False, "queries": [long_query]}
    assert all(long_query not in c["keywords"] for c in result["clusters"])

    created = await pipeline.submit(url=url, options={"include_long_queries": True})
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed", job
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["stats"]["keywords"] == 51 and result["long_queries"]["included"] is True
    clustered = [q for c in result["clusters"] for q in c["keywords"]]
    assert long_query in clustered  # whole, in its cluster
    embedded = {r["text_hash"] for r in await pool.fetch("SELECT text_hash FROM embedding_cache")}
    assert text_hash(embedding_text(long_query)) in embedded  # embedded from its first words ...
    assert text_hash(long_query) not in embedded  # ... never whole, by the clustering or the gap analysis


# --------------------------------------------------------------------------- 2. delimiters and encodings


@pytest.mark.parametrize(("delimiter", "encoding"), [(";", "cp1252"), ("\t", "utf-16")])
async def test_case2_semicolon_and_unicode_text_exports(pipeline, pool, postgres_dsn, tmp_path, delimiter, encoding):
    rows = [HEADER, ["café shed", "8", "120", "6,67%", "2,5"], ["log cabin", "1", "10", "10%", "3"]]
    data = csv_text(rows, delimiter).encode(encoding)
    url = page_url()
    response = await upload(pipeline, data, "Queries.csv", page=url)
    assert response.status_code == 200, response.text
    assert await stored(pool, url) == {"café shed": 8, "log cabin": 1}
    other = page_url()
    done = await cli(tmp_path, postgres_dsn, data, "Queries.csv", "--page", other)
    assert done.returncode == 0, done.stderr
    assert await stored(pool, other) == {"café shed": 8, "log cabin": 1}

    bad = csv_text([["Suchanfragen", "Klicks", "Impressionen", "CTR", "Position"]], delimiter).encode(encoding)
    response = await upload(pipeline, bad, "Queries.csv", page=url)
    assert response.status_code == 422
    line = one_line_error(await cli(tmp_path, postgres_dsn, bad, "Queries.csv", "--page", url))
    shown = "semicolon" if delimiter == ";" else "tab"
    for message in (response.json()["detail"], line):
        assert "missing column Top queries: the header, read as " in message
        assert f"with a {shown} between columns, holds 5 columns ('Suchanfragen'" in message
        assert "expected Top queries (or Query), Clicks, Impressions, CTR and Position" in message


# --------------------------------------------------------------------------- 3. page-and-query files


async def test_case3_page_and_query_files_under_other_headers(pipeline, pool, postgres_dsn, tmp_path):
    a, b = page_url(), page_url()
    data = csv_text(
        [
            ["Query", "Landing Page", "Url Clicks", "Impressions", "URL CTR", "Average Position"],
            ["shed base", a, "8", "100", "8%", "2"],
            ["shed base", b, "8", "100", "8%", "3"],
            ["log cabin", a, "1", "10", "10%", "5"],
        ]
    ).encode()
    response = await upload(pipeline, data, "looker.csv")
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == {a: 2, b: 1}
    assert await stored(pool, a) == {"shed base": 8, "log cabin": 1} and await stored(pool, b) == {"shed base": 8}

    await pool.execute("DELETE FROM gsc_keywords WHERE page_url = ANY($1)", [a, b])
    done = await cli(tmp_path, postgres_dsn, data, "looker.csv", "--page", b)
    assert done.returncode == 0, done.stderr
    assert f"1 rows for {b}" in done.stdout
    assert await stored(pool, b) == {"shed base": 8}  # b's own 8 clicks, not 8 + 8
    assert await stored(pool, a) == {}

    missing = page_url()
    response = await upload(pipeline, data, "looker.csv", page=missing)
    line = one_line_error(await cli(tmp_path, postgres_dsn, data, "looker.csv", "--page", missing))
    assert response.status_code == 422
    for message in (response.json()["detail"], line):
        assert f"has no rows for {missing}; the 2 pages it holds: {a}, {b}." in message


# --------------------------------------------------------------------------- 4. no rows


async def test_case4_an_export_with_no_rows_is_an_error(pipeline, postgres_dsn, tmp_path):
    data = csv_text([HEADER]).encode()
    response = await upload(pipeline, data, "Queries.csv", page=page_url())
    assert response.status_code == 422
    expected = (
        "Queries.csv has a header and no rows: Search Console found no queries for the export's dates and "
        "filters (widen them and export again)"
    )
    assert response.json()["detail"] == expected
    line = one_line_error(await cli(tmp_path, postgres_dsn, data, "Queries.csv", "--page", page_url()))
    assert line.endswith(expected)


# --------------------------------------------------------------------------- 5. ZIP members


async def test_case5_zip_names_with_colons_pass_and_unsafe_ones_do_not(pipeline, pool, postgres_dsn, tmp_path):
    url = page_url()
    files = {
        "Queries.csv": csv_text([HEADER, ["shed base", "3", "30", "10%", "2"]]),
        "Filters.csv": f"Filter,Value\r\nDate,Last 3 months\r\nPage,+{url}\r\n",
        "Project Brief: Oil Tank (final).svg": "<svg/>",
    }
    data = make_zip(files)
    response = await upload(pipeline, data, "export.zip")
    assert response.status_code == 200, response.text
    assert await stored(pool, url) == {"shed base": 3}
    done = await cli(tmp_path, postgres_dsn, data, "export.zip")
    assert done.returncode == 0 and f"1 rows for {url}" in done.stdout, done.stderr

    tricky = make_zip({**files, "../evil.csv": "x"})
    response = await upload(pipeline, tricky, "tricky.zip")
    line = one_line_error(await cli(tmp_path, postgres_dsn, tricky, "tricky.zip"))
    assert response.status_code == 422
    expected = "tricky.zip holds a file with an unsafe path: '../evil.csv' (a parent-directory step (..))"
    assert response.json()["detail"] == expected and line.endswith(expected)


# --------------------------------------------------------------------------- 7. site-wide exports


async def test_case7_a_site_wide_export_needs_site_wide(pipeline, pool, postgres_dsn, tmp_path):
    data = make_zip(
        {
            "Queries.csv": csv_text([HEADER, ["shed base", "3", "30", "10%", "2"]]),
            "Filters.csv": "Filter,Value\r\nSearch type,Web\r\nDate,Last 3 months\r\n",
        }
    )
    url = page_url()
    response = await upload(pipeline, data, "site.zip", page=url)
    line = one_line_error(await cli(tmp_path, postgres_dsn, data, "site.zip", "--page", url))
    assert response.status_code == 422
    for message in (response.json()["detail"], line):
        assert "site.zip is a site-wide export: its Filters.csv sets no page" in message
        assert "click + New, choose Page..., then Exact URL" in message and "--site-wide" in message
    assert await stored(pool, url) == {}

    response = await upload(pipeline, data, "site.zip", page=url, site_wide=True)
    assert response.status_code == 200, response.text
    other = page_url()
    done = await cli(tmp_path, postgres_dsn, data, "site.zip", "--page", other, "--site-wide")
    assert done.returncode == 0, done.stderr
    assert await stored(pool, url) == {"shed base": 3} and await stored(pool, other) == {"shed base": 3}
