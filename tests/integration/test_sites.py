"""Site analysis through the real API, Temporal, Postgres and workers, on the fixture site whose cases are known."""

from __future__ import annotations

import json
import re
import uuid

from tests.helpers import site_fixture
from tests.helpers.batches import replays, wait_ended
from tests.helpers.chromium import dumped_dom, needs_chromium, screenshot
from tests.helpers.cli import cli_env, run_cli
from tests.helpers.settings import REPO

SITE_DOC = REPO / "docs" / "SITE.md"


def name_of(url: str) -> str:
    return url.rsplit("/", 1)[-1].removesuffix(".html")


async def wait_site(pipeline, site_id: str, *, timeout: float = 600) -> dict:
    return await wait_ended(pipeline, f"/v1/sites/{site_id}", timeout=timeout, interval=0.5)


def doc_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", SITE_DOC.read_text(), flags=re.S)


async def start_site(pipeline, site, names=None) -> dict:
    site_fixture.write_site(site)
    csv = site_fixture.page_query_csv(site.base_url, names)
    response = await pipeline.http.post(
        "/v1/sites",
        files={"file": ("pages.csv", csv.encode(), "text/csv")},
        data={"options": json.dumps({"concurrency": 4})},
    )
    assert response.status_code == 202, response.text
    return response.json()


async def test_site_analysis_finds_the_known_cases(pipeline, site, client, pool, tmp_path):
    created = await start_site(pipeline, site)
    assert created["pages"] == len(site_fixture.PAGES)
    ended = await wait_site(pipeline, created["site_id"])
    assert ended["status"] == "completed", ended
    assert ended["counts"]["jobs"]["completed"] == len(site_fixture.PAGES)
    assert ended["counts"]["cases"] == 1 and ended["counts"]["links"] == 1

    result = (await pipeline.http.get(f"/v1/sites/{created['site_id']}/result")).json()
    assert [sorted(name_of(p["url"]) for p in c["pages"]) for c in result["cannibalization"]] == [
        sorted(site_fixture.CANNIBALIZED)
    ]
    case = result["cannibalization"][0]
    # Both pages answer it with the same passage (cosine > 0.8). Whether the intent is the weaker page's core
    # (consolidate) or a part of it (differentiate) follows how each page's own analysis grouped its queries.
    assert all(p["passage_cosine"] is None or p["passage_cosine"] > 0.8 for p in case["pages"])
    assert case["recommendation"] in ("consolidate", "differentiate"), json.dumps(case, indent=1)
    assert any("redirect" in r or "link to" in r for r in case["reasons"])
    assert {"url", "impressions", "clicks", "position"} <= set(case["pages"][0])
    source, target, heading = site_fixture.LINK
    assert [(name_of(x["from_url"]), name_of(x["to_url"]), x["anchor_text"]) for x in result["links"]] == [
        (source, target, heading)
    ]
    assert result["links"][0]["to_segment_id"]
    assert len(result["pages"]) == len(site_fixture.PAGES)
    assert all(p["job_id"] and "top_gaps" in p for p in result["pages"])
    linked_gap = next(
        g for p in result["pages"] if name_of(p["url"]) == source for g in p["top_gaps"] if g["fix"] == "link"
    )
    assert linked_gap["score"] < linked_gap["original_score"]

    # Mirrored rows, the workflow's small history and its replay.
    stage = await pool.fetchrow("SELECT * FROM pageperfect_site_stages WHERE site_id = $1", created["site_id"])
    assert stage["stage"] == "site_analysis" and stage["status"] == "completed" and stage["attempt_count"] == 1
    handle = client.get_workflow_handle(created["workflow_id"])
    history = await handle.fetch_history()
    assert len(history.to_json()) < 30_000
    assert (await handle.query("progress"))["stage"] == "site_analysis"
    await replays(client, created["workflow_id"], pipeline.settings)

    # The documented dashboard queries run and agree with the result.
    answers = [await pool.fetch(sql, uuid.UUID(created["site_id"])) for sql in doc_queries()]
    assert len(answers) == 5
    assert [r["intent"] for r in answers[0]] == [case["intent"]]
    assert {r["url"] for r in answers[1]} == {p["url"] for p in case["pages"]}
    assert [r["to_url"] for r in answers[2]] == [result["links"][0]["to_url"]]
    assert [r["url"] for r in answers[3]] == [p["url"] for p in result["pages"]]
    assert answers[4] == []

    # A second site over the same pages reuses their stored stages; the CLI prints the same result.
    csv = tmp_path / "pages.csv"
    csv.write_text(site_fixture.page_query_csv(site.base_url))
    ran = await run_cli("site", str(csv), "--json", env=cli_env(pipeline, tmp_path), cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    printed = json.loads(ran.stdout)
    assert [(c["intent"], [p["url"] for p in c["pages"]], c["recommendation"]) for c in printed["cannibalization"]] == [
        (case["intent"], [p["url"] for p in case["pages"]], case["recommendation"])
    ]
    assert [(x["from_url"], x["to_url"], x["to_segment_id"]) for x in printed["links"]] == [
        (x["from_url"], x["to_url"], x["to_segment_id"]) for x in result["links"]
    ]
    reused = await pool.fetchval(
        """SELECT count(*) FROM pageperfect_job_stages s JOIN pageperfect_batch_items i ON i.job_id = s.job_id
           JOIN pageperfect_sites t ON t.batch_id = i.batch_id WHERE t.id = $1 AND s.reused""",
        uuid.UUID(printed["site_id"]),
    )
    assert reused >= len(site_fixture.PAGES)


@needs_chromium
async def test_site_report_renders_in_chromium(pipeline, site, tmp_path):
    created = await start_site(pipeline, site)
    assert (await wait_site(pipeline, created["site_id"]))["status"] == "completed"
    result = (await pipeline.http.get(f"/v1/sites/{created['site_id']}/result")).json()
    response = await pipeline.http.get(f"/v1/sites/{created['site_id']}/report")
    assert response.status_code == 200 and "default-src 'none'" in response.headers["content-security-policy"]
    report = tmp_path / "site-report.html"
    report.write_text(response.text)
    dom, console = await dumped_dom(report)
    assert "Pages by opportunity" in dom and "Intents by page" in dom
    bars = dom[dom.index('class="chart bars"') :]
    assert bars[: bars.index("</svg>")].count("<rect") == len(result["pages"])
    matrix = dom[dom.index('class="matrix"') :]
    matrix = matrix[: matrix.index("</table>")]
    assert matrix.count("<tr>") == 1 + len(result["intents"])
    assert dom.count('class="case"') == len(result["cannibalization"])
    assert dom.count('class="link"') == len(result["links"])
    assert console == []
    await screenshot(report, "site-report", height=2200, min_bytes=10_000)


async def test_bad_sites_are_refused_and_start_nothing(pipeline, site, pool, tmp_path):
    site_fixture.write_site(site)
    before = await pool.fetchval("SELECT count(*) FROM pageperfect_sites")
    batches = await pool.fetchval("SELECT count(*) FROM pageperfect_batches")
    one_page = site_fixture.page_query_csv(site.base_url, ["decaf"])
    other_host = one_page + "https://elsewhere.example/x.html,some query,1,10,0.1,3\n"
    cases = [
        (b"", "pages.csv is empty"),
        (b"page,query,clicks,impressions,ctr,position\n", "no page-and-query rows"),
        (one_page.encode(), "at least 2 pages"),
        (other_host.encode(), "not on 127.0.0.1"),
    ]
    for data, expected in cases:
        response = await pipeline.http.post("/v1/sites", files={"file": ("pages.csv", data, "text/csv")})
        assert response.status_code == 422 and expected in response.text, response.text
    response = await pipeline.http.post(
        "/v1/sites",
        json={
            "search_console": {
                "site_url": "https://nothing-imported.example/",
                "start_date": "2026-01-01",
                "end_date": "2026-01-28",
            }
        },
    )
    assert response.status_code == 422 and "import them first" in response.text, response.text
    response = await pipeline.http.post(
        "/v1/sites",
        json={
            "rows": [
                {"page": site.base_url + "/a", "query": "q", "impressions": 1, "position": 2},
                {"page": "http://169.254.169.254/latest", "query": "q", "impressions": 1, "position": 2},
            ]
        },
    )
    assert response.status_code == 422, response.text
    assert (await pipeline.http.get(f"/v1/sites/{uuid.uuid4()}")).status_code == 404
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_sites") == before
    assert await pool.fetchval("SELECT count(*) FROM pageperfect_batches") == batches

    env = cli_env(pipeline, tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    single = tmp_path / "single.csv"
    single.write_text(one_page)
    for path, expected in ((empty, "is empty"), (single, "at least 2 pages")):
        ran = await run_cli("site", str(path), env=env, cwd=tmp_path)
        assert ran.returncode != 0 and expected in ran.stderr, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr


async def test_a_site_whose_pages_all_fail_gets_a_dead_letter(pipeline, site, pool):
    urls = [site.base_url + f"/coffee/missing-{i}.html" for i in range(2)]
    rows = [
        {"page": u, "query": "cold brew ratio", "clicks": 1, "impressions": 50, "ctr": 0.02, "position": 4}
        for u in urls
    ]
    response = await pipeline.http.post("/v1/sites", json={"rows": rows, "max_attempts": 1})
    assert response.status_code == 202, response.text
    created = response.json()
    ended = await wait_site(pipeline, created["site_id"])
    assert ended["status"] == "failed" and "NotEnoughPages" in ended["error"], ended
    letter = await pool.fetchrow(
        "SELECT * FROM pageperfect_site_dead_letters WHERE site_id = $1", uuid.UUID(created["site_id"])
    )
    assert letter["stage"] == "site_analysis" and "NotEnoughPages" in letter["failure_reason"]
    assert (await pipeline.http.get(f"/v1/sites/{created['site_id']}/result")).status_code == 409
