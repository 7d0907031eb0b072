"""`pageperfect site FILE|--gsc-site URL`: a site's pages analysed, then its cannibalization cases and links.

FILE is a page-and-query CSV (columns page, query, clicks, impressions, ctr, position). With
--gsc-site, the property's rows imported for --start..--end are used instead. Goes through the API
at PAGEPERFECT_API_URL, else `pageperfect up`'s; --json prints GET /v1/sites/{id}/result as it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from pageperfect.cli.common import api_call, console, err_console, fail, finish
from pageperfect.models import BatchStatus

site_app = typer.Typer()


def wait_site(site_id: str, *, quiet: bool) -> dict:
    last = None
    while True:
        site = api_call("GET", f"/v1/sites/{site_id}")
        if not quiet:
            jobs = site["counts"]["jobs"]
            shown = f"{site['stage']}: " + ", ".join(f"{v} {k}" for k, v in jobs.items() if v)
            if shown != last:
                err_console.print(shown)
                last = shown
        if site["status"] != BatchStatus.RUNNING:
            return site
        time.sleep(1.0)


def print_site(result: dict) -> None:
    pages = Table("page", "coverage", "gaps", "opportunity", "top gap (fix)", title="Pages by opportunity")
    for p in result["pages"][:30]:
        top = p["top_gaps"][0] if p["top_gaps"] else None
        pages.add_row(
            p["url"],
            "" if p["coverage"] is None else f"{p['coverage']:.0%}",
            str(p["gaps"]),
            f"{p['opportunity']:.3f}",
            f"{top['representative']} ({top['fix']})" if top else "",
        )
    console.print(pages)
    if result["cannibalization"]:
        for i, case in enumerate(result["cannibalization"], 1):
            table = Table(
                "page",
                "impressions",
                "share",
                "clicks",
                "position",
                title=f"{i}. {case['intent']}: {case['recommendation']} (severity {case['severity']:,.0f})",
            )
            for p in case["pages"]:
                table.add_row(
                    p["url"],
                    f"{p['impressions']:,.0f}",
                    f"{p['impression_share']:.0%}",
                    f"{p['clicks']:,.0f}",
                    f"{p['position']:.1f}",
                )
            console.print(table)
            for reason in case["reasons"]:
                console.print(f"  - {reason}")
    else:
        console.print("no cannibalization: no two pages split an intent's impressions")
    if result["links"]:
        links = Table("from", "gap", "link to", "anchor text", title="Links instead of new sections")
        for x in result["links"]:
            links.add_row(x["from_url"], x["intent"], f"{x['to_url']}#{x['to_segment_id']}", x["anchor_text"])
        console.print(links)
    else:
        console.print("no links: no page's gap is answered by another page")


@site_app.command("site")
def site(
    file: Optional[Path] = typer.Argument(None, exists=True, dir_okay=False, help="A page-and-query CSV"),
    gsc_site: Optional[str] = typer.Option(None, "--gsc-site", help="A Search Console property instead"),
    start: Optional[str] = typer.Option(None, "--start", help="With --gsc-site: YYYY-MM-DD"),
    end: Optional[str] = typer.Option(None, "--end", help="With --gsc-site: YYYY-MM-DD"),
    concurrency: int = typer.Option(5, "--concurrency", "-c", min=1, max=50, help="Page jobs at once"),
    force_update: bool = typer.Option(False, "--force-update", help="Run every page's stages again"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the result"),
) -> None:
    """Analyse a site: each page's gaps, then the pages that compete for one intent and the links to propose.

    Examples: pageperfect site performance-by-page.csv ;  pageperfect site --gsc-site https://example.com/
    --start 2026-01-01 --end 2026-01-28 --json
    """
    shared = {"concurrency": concurrency, "force_update": force_update}
    if (file is None) == (gsc_site is None):
        fail("give a page-and-query CSV or --gsc-site URL (with --start and --end)")
    if gsc_site:
        if not (start and end):
            fail("--gsc-site needs --start and --end (YYYY-MM-DD)")
        created = api_call(
            "POST",
            "/v1/sites",
            json={"search_console": {"site_url": gsc_site, "start_date": start, "end_date": end}, **shared},
        )
    else:
        assert file is not None
        data = file.read_bytes()
        if not data.strip():
            fail(f"{file} is empty: a page-and-query CSV (page, query, clicks, impressions, ctr, position) is needed")
        created = api_call(
            "POST", "/v1/sites", files={"file": (file.name, data, "text/csv")}, data={"options": json.dumps(shared)}
        )
    if not as_json:
        err_console.print(f"site {created['site_id']}: {created['pages']} pages")
    if not wait:
        console.print(json.dumps(created) if as_json else f"follow it: {created['status_url']}")
        finish(0)
    try:
        ended = wait_site(created["site_id"], quiet=as_json)
    except KeyboardInterrupt:
        err_console.print(f"stopped watching; the site runs on: {created['status_url']}")
        finish(130)
    if ended["status"] != BatchStatus.COMPLETED:
        fail(f"site {ended['site_id']} {ended['status']}: {ended['error'] or 'see GET /v1/sites/' + ended['site_id']}")
    result = api_call("GET", f"/v1/sites/{created['site_id']}/result")
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_site(result)
    finish(0)
