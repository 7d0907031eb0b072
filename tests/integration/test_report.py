"""The job report: served by the API, saved by the CLI, page text escaped, drawn by a real browser."""

from __future__ import annotations

import re

import httpx

from tests.helpers.chromium import chromium, console_messages, dumped_dom, needs_chromium, screenshot
from tests.helpers.cli import cli_env, run_cli
from tests.helpers.data import demo_keywords
from tests.helpers.faults import NeverDoneCrawler

HOSTILE_QUERY = "fig <img src=x onerror=alert(1)> spots"


def _hostile_page(site) -> str:
    html = site.handler.routes["/index.html"][2].decode()
    title = "&lt;script&gt;alert('title')&lt;/script&gt; Fig care"
    html = re.sub(r"<title>.*?</title>", f"<title>{title}</title>", html)
    html = re.sub(r'<meta property="og:title" content="[^"]*">', f'<meta property="og:title" content="{title}">', html)
    html = html.replace(
        "<h2",
        "<h2>&lt;img src=x onerror=alert(2)&gt; Spots</h2>\n<p>Brown spots come from "
        "&lt;b&gt;overwatering&lt;/b&gt; and cold drafts near windows.</p>\n<h2",
        1,
    )
    return site.add("/report-hostile.html", html)


async def test_report_served_saved_and_escaped(pipeline, site, tmp_path):
    url = _hostile_page(site)
    keywords = demo_keywords() + [
        {"query": HOSTILE_QUERY, "clicks": 5, "impressions": 900, "ctr": 0.005, "position": 9}
    ]
    created = await pipeline.submit(url=url, keywords=keywords)
    assert (await pipeline.wait(created["job_id"]))["status"] == "completed"
    job_id = created["job_id"]

    response = await pipeline.http.get(f"/v1/jobs/{job_id}/report")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt; Fig care" in page  # the title, escaped
    assert "&lt;img src=x onerror=alert(2)&gt; Spots" in page  # a heading, escaped
    assert page.count("<svg") >= 3  # coverage ring, gap bars, cluster map
    assert (await pipeline.http.get(f"/jobs/{job_id}/report")).text == page  # the short path too
    async with httpx.AsyncClient(base_url=pipeline.api_url) as anonymous:  # page text is not for everyone
        assert (await anonymous.get(f"/jobs/{job_id}/report")).status_code == 401

    saved = await run_cli(
        "report", job_id, "-o", str(tmp_path / "report.html"), env=cli_env(pipeline, tmp_path), cwd=tmp_path
    )
    assert saved.returncode == 0, saved.stderr
    assert "wrote" in saved.stdout and (tmp_path / "report.html").read_text() == page


async def test_report_of_unknown_or_unfinished_job_is_refused(pipeline_factory, site, tmp_path):
    pipeline = await pipeline_factory(wrap_crawler=NeverDoneCrawler)
    created = await pipeline.submit(url=site.add("/report-running.html", b"<html></html>"), keywords=demo_keywords())
    try:
        running = await pipeline.http.get(f"/v1/jobs/{created['job_id']}/report")
        assert running.status_code == 409 and "once it completes" in running.json()["detail"]
        unknown = "00000000-0000-4000-8000-000000000000"
        assert (await pipeline.http.get(f"/v1/jobs/{unknown}/report")).status_code == 404
        assert (await pipeline.http.get("/v1/jobs/not-a-uuid/report")).status_code == 422
        cli = await run_cli("report", unknown, env=cli_env(pipeline, tmp_path), cwd=tmp_path)
        assert cli.returncode == 1 and cli.stderr.strip() == f"error: 404: no job {unknown}"
        assert not list(tmp_path.glob("report-*.html"))
    finally:
        await pipeline.http.post(f"/v1/jobs/{created['job_id']}/cancel")
        await pipeline.wait(created["job_id"])


# ---------------------------------------------------------------- in a real browser


@needs_chromium
def test_the_console_check_sees_errors_and_blocked_loads(tmp_path):
    """The detector the report test relies on: a page that errs and loads from outside is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'\"><img src='http://example.invalid/x.png'>"
        "<script>throw new Error('kaput')</script>"
    )
    messages = console_messages(chromium("--dump-dom", page=bad).stderr)
    assert any("Uncaught Error: kaput" in m for m in messages)
    assert any("Content Security Policy" in m for m in messages)


@needs_chromium
async def test_report_renders_in_chromium(pipeline, site, tmp_path):
    created = await pipeline.submit(
        url=site.add("/report-browser.html", site.handler.routes["/index.html"][2]), keywords=demo_keywords()
    )
    assert (await pipeline.wait(created["job_id"]))["status"] == "completed"
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    report = tmp_path / "report.html"
    report.write_text((await pipeline.http.get(f"/v1/jobs/{created['job_id']}/report")).text)

    dom, console = await dumped_dom(report)
    assert "<h1>" in dom and "Gaps by opportunity" in dom
    gaps = [g for g in result["gaps"] if g["has_gap"]]
    assert gaps, "the demo page has gaps to draw"
    bars = dom[dom.index('class="chart bars"') :]
    assert bars[: bars.index("</svg>")].count("<rect") == min(len(gaps), 20)
    scatter = dom[dom.index('class="chart scatter"') :]
    scatter = scatter[: scatter.index("</svg>")]
    assert scatter.count("<circle") == len(result["gaps"])  # every cluster drawn
    assert scatter.count('class="segment"') == result["stats"]["segments"]
    assert dom.count('class="diff"') == len(result["drafts"])
    assert console == []
    await screenshot(report, "report", height=2600, min_bytes=20_000)
