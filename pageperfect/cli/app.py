"""The `pageperfect` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import httpx
import typer
from rich.console import Console
from rich.table import Table

from pageperfect.cli_keys import keys_app
from pageperfect.settings import Settings, get_settings

app = typer.Typer(help="PagePerfect: what a page is missing for the searches that bring it traffic.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
jobs_app = typer.Typer(help="Look at and cancel jobs (through the API at PAGEPERFECT_API_URL).", no_args_is_help=True)
dead_app = typer.Typer(help="Jobs that failed: list them, run them again.", no_args_is_help=True)
mirror_app = typer.Typer(help="The Postgres mirror of Temporal history.", no_args_is_help=True)
gsc_app = typer.Typer(help="Search Console data.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(dead_app, name="dead-letters")
app.add_typer(mirror_app, name="mirror")
app.add_typer(gsc_app, name="gsc")
app.add_typer(keys_app, name="keys")

# Long URLs stay on one line so they can be clicked; piped output gets room for the tables.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, soft_wrap=True)  # a reason stays on one line


def fail(message: str) -> None:
    from rich.markup import escape  # messages quote URLs, files and server text: never markup

    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def _stack_settings(data_dir: Optional[Path], api_port: Optional[int], temporal_port: Optional[int],
                    ui_port: Optional[int]) -> Settings:
    updates = {k: v for k, v in dict(data_dir=data_dir, api_port=api_port, temporal_port=temporal_port,
                                     ui_port=ui_port).items() if v is not None}
    return get_settings().model_copy(update=updates)


DATA_DIR = typer.Option(None, "--data-dir", help="Where Postgres and Temporal keep their files [env PAGEPERFECT_DATA_DIR]")
API_PORT = typer.Option(None, "--api-port", help="API port [env PAGEPERFECT_API_PORT, default 8000]")
TEMPORAL_PORT = typer.Option(None, "--temporal-port", help="Temporal frontend port [env PAGEPERFECT_TEMPORAL_PORT, default 7233]")
UI_PORT = typer.Option(None, "--ui-port", help="Temporal Web UI port [env PAGEPERFECT_UI_PORT, default 8233]")


def _print_stack(stack) -> None:
    console.print(f"Temporal:  {stack.temporal_address}" + (" (embedded dev server)" if stack.embedded_temporal else ""))
    if stack.ui_url:
        console.print(f"Web UI:    {stack.ui_url}")
    console.print("Postgres:  " + ("embedded, in " + str(Path(stack.settings.data_dir).resolve() / "postgres")
                                   if stack.embedded_postgres else "DATABASE_URL"))
    console.print(f"API:       {stack.api_url}   docs: {stack.docs_url}")
    if getattr(stack, "metrics_url", None):
        console.print(f"Metrics:   {stack.metrics_url} (workers)   {stack.api_url}/metrics (API)")
    _print_key(stack)


def _print_key(stack) -> None:
    # A key from the environment is the operator's own: named, never printed.
    from_env = stack.api_key_source == "PAGEPERFECT_API_KEYS"
    shown = "<a key from PAGEPERFECT_API_KEYS>" if from_env else stack.api_key
    console.print(f"API key:   {shown}" + ("" if from_env else f"   (kept in {stack.api_key_source})"))
    console.print(f"           curl -H 'Authorization: Bearer {'$KEY' if from_env else stack.api_key}' {stack.api_url}/v1/jobs")
    if stack.settings.payload_key is not None and stack.settings.payload_key.get_secret_value().strip():
        console.print(f"Codec:     {stack.api_url}/codec/key/{shown}   (the Web UI's Data Encoder endpoint)")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _finish(code: int = 0) -> None:
    """Leave without the Temporal core's interpreter-exit crash: everything is shut down already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def up(data_dir: Optional[Path] = DATA_DIR, api_port: Optional[int] = API_PORT,
       temporal_port: Optional[int] = TEMPORAL_PORT, ui_port: Optional[int] = UI_PORT,
       metrics_port: Optional[int] = typer.Option(
           None, "--metrics-port", help="Serve the workers' Prometheus metrics here [env PAGEPERFECT_WORKER_METRICS_PORT]")
       ) -> None:
    """Start the whole stack in the foreground: Temporal (with Web UI), Postgres, workers, API.

    Uses TEMPORAL_ADDRESS and DATABASE_URL instead of starting its own where they are set.
    Ctrl-C or SIGTERM stops all of it. Example: pageperfect up --api-port 9000
    """
    from pageperfect.up import running_stack

    settings = _stack_settings(data_dir, api_port, temporal_port, ui_port)
    if metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": metrics_port})

    async def run() -> None:
        async with running_stack(settings) as stack:
            _print_stack(stack)
            console.print("Running. Ctrl-C stops everything.")
            await _wait_for_signal()
            console.print("Stopping…")

    try:
        asyncio.run(run())
    except Exception as err:  # a port in use, a server that would not start
        err_console.print(f"[red]error:[/red] {err}")
        _finish(1)
    _finish(0)


@app.command()
def demo(data_dir: Optional[Path] = DATA_DIR, api_port: Optional[int] = API_PORT,
         temporal_port: Optional[int] = TEMPORAL_PORT, ui_port: Optional[int] = UI_PORT,
         keep_running: bool = typer.Option(True, "--keep-running/--exit",
                                           help="Keep the stack up afterwards to look around (Ctrl-C stops)"),
         json_out: bool = typer.Option(False, "--json", help="Print the result as JSON")) -> None:
    """Start the stack and analyze the sample site with its sample Search Console rows.

    Example: pageperfect demo --exit --api-port 9000
    """
    from pageperfect.demo import QUERIES_CSV, DemoSite
    from pageperfect.gsc import parse_queries_csv
    from pageperfect.up import running_stack
    from pageperfect.watch import print_result, watch_job

    settings = _stack_settings(data_dir, api_port, temporal_port, ui_port)
    # The sample site is served on loopback, which the crawl refuses unless allowed.
    allowed = ",".join(filter(None, [settings.allowed_hosts, "127.0.0.1"]))
    settings = settings.model_copy(update={"allowed_hosts": allowed})
    keywords = [r.model_dump() for r in parse_queries_csv(QUERIES_CSV.read_bytes())]

    async def run() -> int:
        with DemoSite() as site:
            async with running_stack(settings) as stack:
                _print_stack(stack)
                async with httpx.AsyncClient(base_url=stack.api_url, timeout=30,
                                             headers={"Authorization": f"Bearer {stack.api_key}"}) as http:
                    url = f"{site.base_url}/index.html"
                    console.print(f"\nAnalyzing {url} with {len(keywords)} sample Search Console queries…")
                    response = await http.post("/v1/jobs", json={"url": url, "keywords": keywords})
                    if response.status_code >= 400:
                        err_console.print(f"[red]error:[/red] {response.status_code} {response.text}")
                        return 1
                    created = response.json()
                    job = await watch_job(http, created["job_id"], console)
                    if job["status"] != "completed":
                        err_console.print(f"[red]job {job['status']}:[/red] {job.get('error')}")
                        return 1
                    result = (await http.get(f"/v1/jobs/{created['job_id']}/result")).json()
                    if json_out:
                        console.print_json(json.dumps(result))
                    else:
                        print_result(result, console)
                    console.print(f"\nJob:       {stack.api_url}/v1/jobs/{created['job_id']}")
                    console.print(f"Result:    {stack.api_url}/v1/jobs/{created['job_id']}/result")
                    if stack.ui_url:
                        console.print(f"Web UI:    {stack.ui_url}/namespaces/default/workflows/"
                                      f"{created['workflow_id']}/{created['run_id']}/history")
                    console.print(f"API docs:  {stack.docs_url}")
                if keep_running:
                    console.print("\nThe stack is still running so you can look around. Ctrl-C stops it.")
                    await _wait_for_signal()
        return 0

    try:
        code = asyncio.run(run())
    except Exception as err:
        err_console.print(f"[red]error:[/red] {err}")
        _finish(1)
    _finish(code)


@app.command()
def migrate() -> None:
    """Apply the numbered SQL migrations under db/migrations (needs DATABASE_URL).

    Example: DATABASE_URL=postgresql://pp@db/pp pageperfect migrate
    """
    from db.migrate import migrate_dsn

    dsn = get_settings().database_dsn
    if not dsn:
        fail("DATABASE_URL is not set")
    applied = asyncio.run(migrate_dsn(dsn))
    console.print("applied: " + (", ".join(applied) if applied else "nothing, up to date"))


@app.command()
def worker(queues: str = typer.Option("workflow,crawl,ai,compute,control", help="Queue kinds to serve")) -> None:
    """Run workers (same as `python worker.py`), against TEMPORAL_ADDRESS and DATABASE_URL.

    Example: pageperfect worker --queues crawl,ai
    """
    import worker as worker_module

    asyncio.run(worker_module.main(tuple(q.strip() for q in queues.split(",") if q.strip())))
    _finish(0)


def _api() -> httpx.Client:
    from pageperfect.apikeys import client_key

    key = client_key(get_settings())  # PAGEPERFECT_API_KEY, else the key `pageperfect up` keeps in the data dir
    return httpx.Client(base_url=get_settings().api_url, timeout=30,
                        headers={"Authorization": f"Bearer {key}"} if key else None)


def _api_call(method: str, path: str, **kwargs) -> dict | list:
    try:
        with _api() as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as err:
        fail(f"the API at {get_settings().api_url} did not answer ({err}); is `pageperfect up` running?")
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("message") or body.get("detail")  # a 422 has a one-line "message"
        except (ValueError, AttributeError):
            detail = response.text
        fail(f"{response.status_code}: {detail}")
    return response.json()


@jobs_app.command("list")
def jobs_list(status: Optional[str] = typer.Option(None, help="queued, processing, completed, failed, cancelled"),
              stage: Optional[str] = typer.Option(None, help="Current stage"),
              limit: int = typer.Option(50)) -> None:
    """List jobs, newest first. Example: pageperfect jobs list --status failed"""
    params = {k: v for k, v in dict(status=status, stage=stage, limit=limit).items() if v is not None}
    rows = _api_call("GET", "/v1/jobs", params=params)
    table = Table("job", "status", "stage", "stages done", "url", "created")
    for row in rows:
        table.add_row(row["job_id"], row["status"], row["stage"] or "", f"{row['stages_completed']}/{row['stages_total']}",
                      row["url"], row["created_at"][:19])
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """A job and its stages. Example: pageperfect jobs show 3f2c…"""
    from pageperfect.watch import stage_table

    job = _api_call("GET", f"/v1/jobs/{job_id}")
    console.print(f"{job['job_id']}  [bold]{job['status']}[/bold]  {job['url']}")
    if job.get("error"):
        console.print(f"error: {job['error']}")
    console.print(stage_table(job))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a running job: it ends as cancelled, not failed. Example: pageperfect jobs cancel 3f2c…"""
    _api_call("POST", f"/v1/jobs/{job_id}/cancel")
    console.print(f"cancel requested for {job_id}")


async def _with_backends(work):
    from db.pool import create_pool
    from pageperfect.temporal import connect

    settings = get_settings()
    if not settings.database_dsn or not settings.temporal_address:
        fail("needs DATABASE_URL and TEMPORAL_ADDRESS (the ones `pageperfect up` printed)")
    pool = await create_pool(settings.database_dsn)
    try:
        client = await connect(settings.temporal_address, settings.temporal_namespace, settings=settings)
        return await work(pool, client, settings)
    finally:
        await pool.close()


@dead_app.command("list")
def dead_letters_list(limit: int = typer.Option(50)) -> None:
    """Failed jobs, newest first. Example: pageperfect dead-letters list --limit 20"""
    rows = _api_call("GET", "/v1/dead-letters", params={"limit": limit})
    table = Table("id", "job", "stage", "attempts", "reason", "routed at")
    for row in rows:
        table.add_row(str(row["id"]), row["job_id"], row["stage"] or "", str(row["attempt_count"]),
                      row["failure_reason"][:80], row["routed_at"][:19])
    console.print(table)


@dead_app.command("redrive")
def dead_letters_redrive(dead_letter_id: int) -> None:
    """Run a failed job again; the stages it completed are reused, not run again.

    Example: pageperfect dead-letters redrive 17 (the id from `dead-letters list`)
    """
    from pageperfect.redrive import redrive

    async def work(pool, client, settings):
        return await redrive(dead_letter_id, pool=pool, client=client, settings=settings)

    try:
        submitted = asyncio.run(_with_backends(work))
    except LookupError as err:
        fail(str(err))
    console.print(f"redriven as job {submitted.job_id} (workflow {submitted.workflow_id})")
    _finish(0)


@mirror_app.command("reconcile")
def mirror_reconcile(job_id: Optional[str] = typer.Argument(None, help="One job; all jobs of the last day without it"),
                     check: bool = typer.Option(False, "--check", help="Only report differences; exit 1 if any")) -> None:
    """Rebuild the mirror's job and stage rows from Temporal history.

    Example: pageperfect mirror reconcile --check (exit 1 if a row differs from history)
    """
    from pageperfect.reconcile import reconcile

    async def work(pool, client, settings):
        return await reconcile(pool, client, job_id=job_id, write=not check)

    differences = asyncio.run(_with_backends(work))
    for line in differences:
        console.print(line)
    console.print(f"{len(differences)} difference(s)" + ("" if check else " repaired"))
    _finish(1 if check and differences else 0)


@gsc_app.command("import")
def gsc_import(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Export ZIP, Queries.csv, or a page-and-query CSV"),
               page: Optional[str] = typer.Option(None, "--page", help="The page the rows belong to (else Filters.csv's page)"),
               min_position: Optional[float] = typer.Option(None, help="Leave out queries ranking above this"),
               max_position: Optional[float] = typer.Option(None, help="Leave out queries ranking below this"),
               min_impressions: Optional[float] = typer.Option(None),
               min_clicks: Optional[float] = typer.Option(None),
               max_keywords: Optional[int] = typer.Option(None, help="Keep the first N after sorting"),
               sort_by: str = typer.Option("impressions", help="impressions, clicks or position"),
               brand: list[str] = typer.Option([], "--brand", help="A brand term whose queries are left out (repeatable)")) -> None:
    """Import a Search Console export; the next job for that page uses its rows.

    Example: pageperfect gsc import ~/Downloads/Performance.zip --page https://example.com/blog/post --brand acme
    """
    from pydantic import ValidationError

    from db.pool import create_pool
    from pageperfect.gsc_import import import_file
    from pageperfect.models import KeywordFilters

    settings = get_settings()
    if not settings.database_dsn:
        fail("needs DATABASE_URL")
    try:
        filters = KeywordFilters(min_position=min_position, max_position=max_position, min_impressions=min_impressions,
                                 min_clicks=min_clicks, max_keywords=max_keywords, sort_by=sort_by, brand_terms=brand)
    except ValidationError as err:
        fail(f"bad filter: {err.errors()[0]['loc'][0]}: {err.errors()[0]['msg']}")

    async def run():
        pool = await create_pool(settings.database_dsn)
        try:
            return await import_file(pool, file, page=page, filters=filters)
        finally:
            await pool.close()

    try:
        counts = asyncio.run(run())
    except ValueError as err:
        fail(str(err))
    for url, count in counts.items():
        console.print(f"{count} rows for {url}")


import pageperfect.cli_ops  # noqa: E402,F401  registers analyze, jobs tune, replay, report
import pageperfect.cli_batch  # noqa: E402,F401  registers batch
import pageperfect.cli_schedules  # noqa: E402,F401  registers schedules


def main() -> None:
    try:
        app()
    except Exception as err:  # a server that does not answer is a one-line reason, not a traceback
        reason = pageperfect.cli_ops.expected_failure(err)
        if reason is None:
            raise
        err_console.print(f"error: {reason}", markup=False)
        _finish(1)


if __name__ == "__main__":
    # `python -m pageperfect.cli`: run the importable module's app, the one cli_ops registers its commands on.
    from pageperfect.cli import main as _main

    _main()
