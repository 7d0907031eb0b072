"""Operator commands: analyze, jobs tune, replay, report. cli.py imports this module to register them.

Everything goes through the API at PAGEPERFECT_API_URL except replay, which talks to
Temporal (TEMPORAL_ADDRESS) or reads history files and needs nothing running.
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

from pageperfect.cli import _api, _api_call, _finish, app, console, err_console, fail, jobs_app
from pageperfect.settings import get_settings

INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C


def expected_failure(err: BaseException) -> str | None:
    """A one-line reason for what an operator meets (a server down, a refused login), None for a bug."""
    import asyncpg
    from temporalio.service import RPCError

    settings = get_settings()
    if isinstance(err, RPCError):
        return f"Temporal at {settings.temporal_address}: {err.message}"
    if isinstance(err, RuntimeError) and str(err).startswith("Failed client connect"):
        return f"Temporal at {settings.temporal_address} did not answer; is it running?"
    if isinstance(err, (asyncpg.PostgresError, asyncpg.InterfaceError)):
        return f"Postgres (DATABASE_URL): {err}"  # asyncpg's messages never hold the password
    if isinstance(err, (ConnectionError, TimeoutError, OSError)):
        return f"could not connect ({err}); is the server running? (DATABASE_URL, TEMPORAL_ADDRESS)"
    return None


def _examples(*lines: str) -> str:
    # Rich help rewraps text; one paragraph per example keeps them on their own lines.
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


# ---------------------------------------------------------------- analyze


def read_keyword_rows(path: Path, *, gsc_export: bool) -> list[dict]:
    """Rows for a job from a Search Console export, a CSV of rows, or JSON; ValueError says what is wrong."""
    from pydantic import TypeAdapter, ValidationError

    from pageperfect.gsc import parse_queries_csv, read_export
    from pageperfect.models import KeywordRow

    if gsc_export:
        rows = read_export(path).rows
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


def _async_api() -> httpx.AsyncClient:
    """An async client with what `_api()` sends (base URL, API key)."""
    with _api() as sync:
        return httpx.AsyncClient(base_url=sync.base_url, headers=sync.headers, auth=sync.auth, timeout=sync.timeout)


async def _watch_and_fetch(job_id: str, progress_console: Console) -> tuple[dict, dict | None]:
    from pageperfect.watch import watch_job

    async with _async_api() as http:
        job = await watch_job(http, job_id, progress_console)
        if job["status"] != "completed":
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
        _api_call("POST", f"/v1/jobs/{job_id}/cancel")
        err_console.print(f"cancel requested for job {job_id}; it ends as cancelled", markup=False)
    else:
        err_console.print(f"stopped watching; job {job_id} keeps running (pageperfect jobs show {job_id})",
                          markup=False)
    raise typer.Exit(INTERRUPTED)


@app.command(epilog=_examples(
    "pageperfect analyze https://example.com/blog/post --gsc ~/Downloads/Performance.zip",
    "pageperfect analyze https://example.com/blog/post --keywords rows.csv --no-wait",
    "pageperfect analyze https://example.com/blog/post --json > result.json",
))
def analyze(
    url: str = typer.Argument(..., help="The page to analyze"),
    gsc: Optional[Path] = typer.Option(None, "--gsc", exists=True, dir_okay=False,
                                       help="A Search Console Performance export: the ZIP, or its Queries.csv"),
    keywords: Optional[Path] = typer.Option(None, "--keywords", exists=True, dir_okay=False,
                                            help="Rows of query, clicks, impressions, ctr, position: a CSV with that "
                                                 "header, or JSON (a list of rows)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Watch the job to its end, or print its id and return"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (the result; the new job with --no-wait); "
                                                        "progress goes to stderr"),
    top: int = typer.Option(10, "--top", min=1, help="Gaps in the table"),
) -> None:
    """Analyze a page: submit a job through the API, watch its stages, print the gaps and drafts.

    Without --gsc or --keywords the page's latest `pageperfect gsc import` is used. Ctrl-C while watching asks whether to cancel the job or leave it running.
    """
    from pageperfect.watch import WatchError, print_result

    if gsc and keywords:
        fail("give --gsc or --keywords, not both")
    body: dict = {"url": url}
    source = gsc or keywords
    if source:
        try:
            body["keywords"] = read_keyword_rows(source, gsc_export=gsc is not None)
        except ValueError as err:
            fail(str(err))
    created = _api_call("POST", "/v1/jobs", json=body)
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
        fail(f"the API at {get_settings().api_url} stopped answering ({err}); the job goes on: "
             f"pageperfect jobs show {job_id}")
    if result is None:
        fail(f"job {job_id} {job['status']}" + (f" at {job['stage']}" if job.get("stage") else "")
             + (f": {job['error']}" if job.get("error") else ""))
    report_url = f"{get_settings().api_url.rstrip('/')}/v1/jobs/{job_id}/report"
    if json_out:
        out.print_json(json.dumps(result))
        err_console.print(f"Report: {report_url}", markup=False)
        return
    print_result(result, out, top=top)
    out.print(Text(f"\nReport:    {report_url}\n           pageperfect report {job_id} -o report.html"))


# ---------------------------------------------------------------- jobs tune


@jobs_app.command("tune", epilog=_examples(
    "pageperfect jobs tune 3f2c9a0e-… --max-attempts 10",
    "pageperfect jobs tune 3f2c9a0e-… --max-attempts 3 --retry-delay 30",
))
def jobs_tune(
    job_id: str = typer.Argument(..., help="The job"),
    max_attempts: Optional[int] = typer.Option(None, "--max-attempts", min=1, max=50,
                                               help="Attempts per stage, the first included"),
    retry_delay: Optional[float] = typer.Option(None, "--retry-delay", min=0.1, max=3600,
                                                help="Seconds before the first retry (then doubling)"),
) -> None:
    """Change the retry settings of a running job's remaining stages.

    Stages that have not started get the new policy. Stages already running keep the policy they were scheduled with: Temporal fixes an activity's retry policy when it is scheduled.
    """
    if max_attempts is None and retry_delay is None:
        fail("give --max-attempts, --retry-delay or both")
    body = {k: v for k, v in dict(max_attempts=max_attempts, retry_delay_seconds=retry_delay).items() if v is not None}
    tuned = _api_call("POST", f"/v1/jobs/{job_id}/tune", json=body)
    attempts = tuned["max_attempts"] if tuned["max_attempts"] is not None else "the stage table's"
    delay = f"{tuned['retry_delay_seconds']:g} s" if tuned["retry_delay_seconds"] is not None else "the stage table's"
    stages = ", ".join(tuned["applies_to"]) or "none left"
    console.print(f"job {job_id}: max attempts {attempts}, first retry after {delay}; applies to {stages}"
                  + (f" (running now, unchanged: {', '.join(tuned['running'])})" if tuned.get("running") else ""),
                  markup=False)


# ---------------------------------------------------------------- replay


@app.command(epilog=_examples(
    "temporal workflow show --workflow-id pageperfect-page-12 --output json > h.json && pageperfect replay h.json",
    "pageperfect replay tests/histories/*.json",
    "pageperfect replay --workflow-id pageperfect-page-12",
    "pageperfect replay --all --query \"StartTime > '2026-01-01T00:00:00Z'\" --limit 500",
))
def replay(
    files: Optional[list[Path]] = typer.Argument(None, exists=True, dir_okay=False,
                                                 help="Histories from `temporal workflow show --output json`"),
    workflow_id: Optional[str] = typer.Option(None, "--workflow-id", help="Fetch this workflow's history from Temporal"),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="With --workflow-id: this run (default the latest)"),
    all_runs: bool = typer.Option(False, "--all", help="Every closed PagePerfect run Temporal still keeps"),
    query: Optional[str] = typer.Option(None, "--query", help="With --all: a further visibility filter, ANDed in"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="With --all: at most this many runs, newest first"),
) -> None:
    """Replay workflow histories against the current code; exit 1 on any non-determinism.

    Uses the worker's interceptors and data converter (and payload keys, where encryption is on). Run it before deploying a workflow change: a failure means the change needs a workflow.patched branch.
    """
    from pageperfect.replay import HistoryFileError, closed_histories, fetch_history, read_history_file, replay_history, replayer

    if sum([bool(files), workflow_id is not None, all_runs]) != 1:
        fail("give history FILEs, --workflow-id ID or --all (one of them)")
    if (run_id and not workflow_id) or ((query or limit) and not all_runs):
        fail("--run-id goes with --workflow-id; --query and --limit go with --all")
    histories = []
    if files:
        try:
            histories = [read_history_file(path) for path in files]
        except HistoryFileError as err:
            fail(str(err))

    async def run() -> list:
        engine = replayer(quiet=True)
        if files:
            return [await replay_history(h, engine=engine) for h in histories]
        client = await _temporal_client()
        if workflow_id:
            return [await replay_history(await fetch_history(client, workflow_id, run_id), engine=engine)]
        outcomes = []
        async for history in closed_histories(client, extra_query=query, limit=limit):
            outcomes.append(await replay_history(history, engine=engine))
        return outcomes

    try:
        outcomes = asyncio.run(run())
    except Exception as err:  # Temporal unreachable, an unknown workflow, a bad query
        from temporalio.service import RPCError

        message = err.message if isinstance(err, RPCError) else str(err)
        if message.startswith("Failed client connect"):
            message = f"Temporal at {get_settings().temporal_address} did not answer; is it running?"
        err_console.print(f"error: {message.splitlines()[0] if message else type(err).__name__}", markup=False)
        _finish(1)
    failed = [o for o in outcomes if not o.ok]
    for outcome in outcomes:
        which = f"{outcome.workflow_id} {outcome.run_id or ''}".strip()
        if outcome.ok:
            console.print(f"ok                 {which}", markup=False)
        else:
            label = "NON-DETERMINISTIC " if outcome.nondeterministic else "REPLAY FAILED     "
            console.print(Text(f"{label} {which}: {outcome.error}", style="red"))
    if not outcomes:
        console.print("no closed PagePerfect runs matched", markup=False)
    console.print(f"{len(outcomes)} replayed, {len(failed)} failed", markup=False)
    _finish(1 if failed else 0)


async def _temporal_client():
    from pageperfect.temporal import connect

    settings = get_settings()
    if not settings.temporal_address:
        raise RuntimeError("needs TEMPORAL_ADDRESS (the one `pageperfect up` printed)")
    return await connect(settings.temporal_address, settings.temporal_namespace, settings=settings)


# ---------------------------------------------------------------- report


@app.command(epilog=_examples(
    "pageperfect report 3f2c9a0e-… -o report.html",
    "pageperfect report 3f2c9a0e-… -o - | gzip > report.html.gz",
))
def report(
    job_id: str = typer.Argument(..., help="A completed job"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write it (default report-JOB.html; - for stdout)"),
) -> None:
    """Save a job's report: one self-contained HTML page (coverage, gaps, cluster map, outline, drafts)."""
    try:
        with _api() as http:
            response = http.get(f"/v1/jobs/{job_id}/report")
    except httpx.HTTPError as err:
        fail(f"the API at {get_settings().api_url} did not answer ({err}); is `pageperfect up` running?")
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
