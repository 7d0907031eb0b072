"""The `pageperfect` command: the root app, its own commands (up, demo, migrate, worker) and the sub-apps.

The command modules (jobs, dead_letters, mirror, gsc, keys, batch, schedules, analyze, replay)
each make their own Typer and import only pageperfect.cli.common; this module puts them together.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Optional

import httpx
import typer

from pageperfect.cli import (
    analyze,
    batch,
    common,
    dead_letters,
    gsc,
    jobs,
    keys,
    mirror,
    prune,
    replay,
    schedules,
    site,
)
from pageperfect.cli.common import console, err_console, fail, finish
from pageperfect.settings import Settings

app = typer.Typer(
    help="PagePerfect: what a page is missing for the searches that bring it traffic.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(dead_letters.dead_app, name="dead-letters")
app.add_typer(mirror.mirror_app, name="mirror")
app.add_typer(gsc.gsc_app, name="gsc")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(schedules.schedules_app, name="schedules")
# Commands at the top level: analyze, report, replay, batch, prune.
app.add_typer(analyze.analyze_app)
app.add_typer(replay.replay_app)
app.add_typer(batch.batch_app)
app.add_typer(prune.prune_app)
app.add_typer(site.site_app)


@app.callback()
def _root(
    data_dir: Optional[Path] = typer.Option(
        None,
        "--data-dir",
        help="The data dir of `pageperfect up`, whose stack every command uses where no address "
        "is set (env PAGEPERFECT_DATA_DIR, default .pageperfect)",
    ),
    temporal_address: Optional[str] = typer.Option(None, "--temporal-address", help="Temporal (env TEMPORAL_ADDRESS)"),
    database_url: Optional[str] = typer.Option(None, "--database-url", help="Postgres (env DATABASE_URL)"),
    api_url: Optional[str] = typer.Option(None, "--api-url", help="The API (env PAGEPERFECT_API_URL)"),
) -> None:
    """Where the servers are: these options, then the environment, then the `pageperfect up` of the data dir."""
    common.use(data_dir=data_dir, temporal_address=temporal_address, database_url=database_url, api_url=api_url)


def _stack_settings(
    data_dir: Optional[Path], api_port: Optional[int], temporal_port: Optional[int], ui_port: Optional[int]
) -> Settings:
    return common.settings(data_dir=data_dir, api_port=api_port, temporal_port=temporal_port, ui_port=ui_port)


DATA_DIR = typer.Option(
    None, "--data-dir", help="Where Postgres and Temporal keep their files [env PAGEPERFECT_DATA_DIR]"
)
API_PORT = typer.Option(None, "--api-port", help="API port [env PAGEPERFECT_API_PORT, default 8000]")
TEMPORAL_PORT = typer.Option(
    None, "--temporal-port", help="Temporal frontend port [env PAGEPERFECT_TEMPORAL_PORT, default 7233]"
)
UI_PORT = typer.Option(None, "--ui-port", help="Temporal Web UI port [env PAGEPERFECT_UI_PORT, default 8233]")


def _print_stack(stack) -> None:
    console.print(
        f"Temporal:  {stack.temporal_address}" + (" (embedded dev server)" if stack.embedded_temporal else "")
    )
    if stack.ui_url:
        console.print(f"Web UI:    {stack.ui_url}")
    console.print(
        "Postgres:  "
        + (
            "embedded, in " + str(Path(stack.settings.data_dir).resolve() / "postgres")
            if stack.embedded_postgres
            else "DATABASE_URL"
        )
    )
    console.print(f"API:       {stack.api_url}   docs: {stack.docs_url}")
    if stack.retention is not None:
        console.print(
            f"Retention: closed runs stay in Temporal for {stack.retention.total_seconds() / 86400:g} days "
            "(PAGEPERFECT_TEMPORAL_RETENTION_DAYS)"
        )
    if getattr(stack, "metrics_url", None):
        console.print(f"Metrics:   {stack.metrics_url} (workers)   {stack.api_url}/metrics (API)")
    _print_key(stack)


def _print_key(stack) -> None:
    # A key from the environment is the operator's own: named, never printed.
    from_env = stack.api_key_source == "PAGEPERFECT_API_KEYS"
    shown = "<a key from PAGEPERFECT_API_KEYS>" if from_env else stack.api_key
    console.print(f"API key:   {shown}" + ("" if from_env else f"   (kept in {stack.api_key_source})"))
    console.print(
        f"           curl -H 'Authorization: Bearer {'$KEY' if from_env else stack.api_key}' {stack.api_url}/v1/jobs"
    )
    if stack.settings.payload_key is not None and stack.settings.payload_key.get_secret_value().strip():
        console.print(f"Codec:     {stack.api_url}/codec/key/{shown}   (the Web UI's Data Encoder endpoint)")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def up(
    data_dir: Optional[Path] = DATA_DIR,
    api_port: Optional[int] = API_PORT,
    temporal_port: Optional[int] = TEMPORAL_PORT,
    ui_port: Optional[int] = UI_PORT,
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", help="Serve the workers' Prometheus metrics here [env PAGEPERFECT_WORKER_METRICS_PORT]"
    ),
) -> None:
    """Start the whole stack in the foreground: Temporal (with Web UI), Postgres, workers, API.

    Uses TEMPORAL_ADDRESS and DATABASE_URL instead of starting its own where they are set.
    Ctrl-C or SIGTERM stops all of it. Example: pageperfect up --api-port 9000
    """
    from pageperfect.ops.up import running_stack

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
        finish(1)
    finish(0)


@app.command()
def demo(
    data_dir: Optional[Path] = DATA_DIR,
    api_port: Optional[int] = API_PORT,
    temporal_port: Optional[int] = TEMPORAL_PORT,
    ui_port: Optional[int] = UI_PORT,
    keep_running: bool = typer.Option(
        True, "--keep-running/--exit", help="Keep the stack up afterwards to look around (Ctrl-C stops)"
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON"),
) -> None:
    """Start the stack and analyze the sample site with its sample Search Console rows.

    Example: pageperfect demo --exit --api-port 9000
    """
    from pageperfect.cli.watch import print_result, watch_job
    from pageperfect.models import JobStatus
    from pageperfect.demo import QUERIES_CSV, DemoSite
    from pageperfect.ops.up import running_stack
    from pageperfect.sources.gsc import parse_queries_csv

    settings = _stack_settings(data_dir, api_port, temporal_port, ui_port)
    # The sample site is served on loopback, which the crawl refuses unless allowed.
    allowed = ",".join(filter(None, [settings.allowed_hosts, "127.0.0.1"]))
    settings = settings.model_copy(update={"allowed_hosts": allowed})
    keywords = [r.model_dump() for r in parse_queries_csv(QUERIES_CSV.read_bytes())]

    async def run() -> int:
        with DemoSite() as site:
            async with running_stack(settings) as stack:
                _print_stack(stack)
                async with httpx.AsyncClient(
                    base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {stack.api_key}"}
                ) as http:
                    url = f"{site.base_url}/index.html"
                    console.print(f"\nAnalyzing {url} with {len(keywords)} sample Search Console queries…")
                    response = await http.post("/v1/jobs", json={"url": url, "keywords": keywords})
                    if response.status_code >= 400:
                        err_console.print(f"[red]error:[/red] {response.status_code} {response.text}")
                        return 1
                    created = response.json()
                    job = await watch_job(http, created["job_id"], console)
                    if job["status"] != JobStatus.COMPLETED:
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
                        console.print(
                            f"Web UI:    {stack.ui_url}/namespaces/default/workflows/"
                            f"{created['workflow_id']}/{created['run_id']}/history"
                        )
                    console.print(f"API docs:  {stack.docs_url}")
                if keep_running:
                    console.print("\nThe stack is still running so you can look around. Ctrl-C stops it.")
                    await _wait_for_signal()
        return 0

    try:
        code = asyncio.run(run())
    except Exception as err:
        err_console.print(f"[red]error:[/red] {err}")
        finish(1)
    finish(code)


@app.command()
def migrate() -> None:
    """Apply the numbered SQL migrations under db/migrations to DATABASE_URL, else to the embedded Postgres.

    Example: DATABASE_URL=postgresql://pp@db/pp pageperfect migrate
    """
    from db.migrate import migrate_dsn
    from pageperfect.runtime.backends import BackendError, database

    async def run() -> list[str]:
        async with database(common.settings()) as dsn:
            return await migrate_dsn(dsn)

    try:
        applied = asyncio.run(run())
    except BackendError as err:
        fail(str(err))
    console.print("applied: " + (", ".join(applied) if applied else "nothing, up to date"))


@app.command()
def worker(queues: str = typer.Option("workflow,crawl,ai,compute,control", help="Queue kinds to serve")) -> None:
    """Run workers (same as `python worker.py`): against TEMPORAL_ADDRESS and DATABASE_URL, else `pageperfect up`'s.

    Example: pageperfect worker --queues crawl,ai
    """
    from pageperfect.runtime import worker as worker_module

    asyncio.run(
        worker_module.main(tuple(q.strip() for q in queues.split(",") if q.strip()), settings=common.settings())
    )
    finish(0)


def main() -> None:
    try:
        app()
    except Exception as err:  # a server that does not answer is a one-line reason, not a traceback
        reason = common.expected_failure(err)
        if reason is None:
            raise
        err_console.print(f"error: {reason}", markup=False)
        finish(1)
