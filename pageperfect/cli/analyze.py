"""`pageperfect analyze` and `pageperfect report`: a page's job through the API, watched to its end; its report.

Both go through the API at PAGEPERFECT_API_URL, else the API of the running `pageperfect up`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Optional

import httpx
import typer
from rich.console import Console
from rich.text import Text

from pageperfect.cli.common import INTERRUPTED, api, api_call, api_url, async_api, console, err_console, examples, fail

analyze_app = typer.Typer()


# ---------------------------------------------------------------- analyze


def read_keyword_rows(path: Path, *, gsc_export: bool, page: str | None = None, site_wide: bool = False) -> list[dict]:
    """Rows for a job from a Search Console export, a CSV of rows, or JSON; ValueError says what is wrong.

    An export's rows must be the page's: a page-and-query file gives that page's rows, a site-wide
    export is refused unless site_wide (the reader's rules, docs/SEARCH_CONSOLE.md).
    """
    from pydantic import TypeAdapter, ValidationError

    from pageperfect.sources.gsc import pages_for_import, parse_queries_csv, read_export
    from pageperfect.models import KeywordRow

    if gsc_export:
        export = read_export(path)
        if export.pages is None and page is None:
            rows = export.rows
        else:
            (rows,) = pages_for_import(export, page, site_wide=site_wide).values()
    else:
        data = path.read_bytes()
        if path.suffix.lower() == ".json" or data.lstrip()[:1] in (b"[", b"{"):
            try:
                parsed = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{path.name} is not valid JSON ({err})") from None
            if isinstance(parsed, dict):
                parsed = parsed.get("keywords")
            if not isinstance(parsed, list):
                raise ValueError(f'{path.name}: expected a list of rows, or {{"keywords": [rows]}}')
            try:
                rows = TypeAdapter(list[KeywordRow]).validate_python(parsed)
            except ValidationError as err:
                first = err.errors()[0]
                where = ", ".join(str(p + 1) if isinstance(p, int) else str(p) for p in first["loc"])
                raise ValueError(f"{path.name} row {where}: {first['msg']}") from None
        else:
            rows = parse_queries_csv(data, source=path.name)
    if not rows:
        raise ValueError(f"{path.name} holds no query rows")
    return [row.model_dump() for row in rows]


async def _watch_and_fetch(job_id: str, progress_console: Console) -> tuple[dict, dict | None]:
    from pageperfect.cli.watch import watch_job
    from pageperfect.models import JobStatus

    async with async_api() as http:
        job = await watch_job(http, job_id, progress_console)
        if job["status"] != JobStatus.COMPLETED:
            return job, None
        response = await http.get(f"/v1/jobs/{job_id}/result")
        response.raise_for_status()
        return job, response.json()


def _interrupted(job_id: str) -> None:
    """Ctrl-C while watching: cancel the job, or only stop watching (always, without a terminal)."""
    cancel = False
    if sys.stdin.isatty():
        try:
            cancel = typer.confirm(f"\nCancel job {job_id}? (No leaves it running)", default=False, err=True)
        except (typer.Abort, EOFError, KeyboardInterrupt):
            cancel = False
    if cancel:
        api_call("POST", f"/v1/jobs/{job_id}/cancel")
        err_console.print(f"cancel requested for job {job_id}; it ends as cancelled", markup=False)
    else:
        err_console.print(
            f"stopped watching; job {job_id} keeps running (pageperfect jobs show {job_id})", markup=False
        )
    raise typer.Exit(INTERRUPTED)


@analyze_app.command(
    epilog=examples(
        "pageperfect analyze https://example.com/blog/post --gsc ~/Downloads/Performance.zip",
        "pageperfect analyze https://example.com/blog/post --keywords rows.csv --no-wait",
        "pageperfect analyze https://example.com/blog/post --json > result.json",
    )
)
def analyze(
    url: str = typer.Argument(..., help="The page to analyze"),
    gsc: Optional[Path] = typer.Option(
        None,
        "--gsc",
        exists=True,
        dir_okay=False,
        help="A Search Console Performance export: the ZIP, or its Queries.csv",
    ),
    keywords: Optional[Path] = typer.Option(
        None,
        "--keywords",
        exists=True,
        dir_okay=False,
        help="Rows of query, clicks, impressions, ctr, position: a CSV with that header, or JSON (a list of rows)",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Watch the job to its end, or print its id and return"),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON (the result; the new job with --no-wait); progress goes to stderr"
    ),
    top: int = typer.Option(10, "--top", min=1, help="Gaps in the table"),
    site_wide: bool = typer.Option(
        False,
        "--site-wide",
        help="With --gsc: the export is the whole site's (no page filter) and its queries are meant for this page",
    ),
    include_long_queries: bool = typer.Option(
        False, "--include-long-queries", help="Cluster long or prompt-like queries too (left out by default)"
    ),
) -> None:
    """Analyze a page: submit a job through the API, watch its stages, print the gaps and drafts.

    Without --gsc or --keywords the page's latest `pageperfect gsc import` is used. Ctrl-C while watching asks whether to cancel the job or leave it running.
    """
    from pageperfect.cli.watch import WatchError, print_result

    if gsc and keywords:
        fail("give --gsc or --keywords, not both")
    body: dict = {"url": url}
    source = gsc or keywords
    if source:
        try:
            body["keywords"] = read_keyword_rows(source, gsc_export=gsc is not None, page=url, site_wide=site_wide)
        except ValueError as err:
            fail(str(err))
    if include_long_queries:
        body["options"] = {"include_long_queries": True}
    created = api_call("POST", "/v1/jobs", json=body)
    job_id = created["job_id"]
    out = console
    if not wait:
        if json_out:
            out.print_json(json.dumps(created))
        else:
            out.print(f"job {job_id} {created['status']}: pageperfect jobs show {job_id}", markup=False)
        return
    progress_console = err_console if json_out else console
    if created.get("existing"):
        progress_console.print(f"{created['url']} already has a running job: watching {job_id}", markup=False)
    else:
        progress_console.print(f"job {job_id} for {created['url']}", markup=False)
    try:
        job, result = asyncio.run(_watch_and_fetch(job_id, progress_console))
    except KeyboardInterrupt:
        _interrupted(job_id)
    except (WatchError, httpx.HTTPStatusError) as err:
        fail(f"watching job {job_id}: {err}")
    except httpx.HTTPError as err:
        fail(f"the API at {api_url()} stopped answering ({err}); the job goes on: pageperfect jobs show {job_id}")
    if result is None:
        fail(
            f"job {job_id} {job['status']}"
            + (f" at {job['stage']}" if job.get("stage") else "")
            + (f": {job['error']}" if job.get("error") else "")
        )
    report_url = f"{api_url().rstrip('/')}/v1/jobs/{job_id}/report"
    if json_out:
        out.print_json(json.dumps(result))
        err_console.print(f"Report: {report_url}", markup=False)
        return
    print_result(result, out, top=top)
    out.print(Text(f"\nReport:    {report_url}\n           pageperfect report {job_id} -o report.html"))


# ---------------------------------------------------------------- report


@analyze_app.command(
    epilog=examples(
        "pageperfect report 3f2c9a0e-… -o report.html",
        "pageperfect report 3f2c9a0e-… -o - | gzip > report.html.gz",
    )
)
def report(
    job_id: str = typer.Argument(..., help="A completed job"),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Where to write it (default report-JOB.html; - for stdout)"
    ),
) -> None:
    """Save a job's report: one self-contained HTML page (coverage, gaps, cluster map, outline, drafts)."""
    try:
        with api() as http:
            response = http.get(f"/v1/jobs/{job_id}/report")
    except httpx.HTTPError as err:
        fail(f"the API at {api_url()} did not answer ({err}); is `pageperfect up` running?")
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = response.text[:200]
        fail(f"{response.status_code}: {detail}")
    if str(output) == "-":
        sys.stdout.write(response.text)
        return
    target = output or Path(f"report-{job_id}.html")
    try:
        target.write_text(response.text, encoding="utf-8")
    except OSError as err:
        fail(f"cannot write {target}: {err.strerror or err}")
    console.print(f"wrote {target} ({len(response.content) / 1024:.0f} KB)", markup=False)
