"""`pageperfect jobs`: list, show, cancel and retune jobs, through the API."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from pageperfect.cli.common import api_call, console, examples, fail

jobs_app = typer.Typer(
    help="Look at and cancel jobs (through the API at PAGEPERFECT_API_URL, else `pageperfect up`'s).",
    no_args_is_help=True,
)


@jobs_app.command("list")
def jobs_list(
    status: Optional[str] = typer.Option(None, help="queued, processing, completed, failed, cancelled"),
    stage: Optional[str] = typer.Option(None, help="Current stage"),
    limit: int = typer.Option(50),
) -> None:
    """List jobs, newest first. Example: pageperfect jobs list --status failed"""
    params = {k: v for k, v in dict(status=status, stage=stage, limit=limit).items() if v is not None}
    rows = api_call("GET", "/v1/jobs", params=params)
    table = Table("job", "status", "stage", "stages done", "url", "created")
    for row in rows:
        table.add_row(
            row["job_id"],
            row["status"],
            row["stage"] or "",
            f"{row['stages_completed']}/{row['stages_total']}",
            row["url"],
            row["created_at"][:19],
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """A job and its stages. Example: pageperfect jobs show 3f2c…"""
    from pageperfect.cli.watch import stage_table

    job = api_call("GET", f"/v1/jobs/{job_id}")
    console.print(f"{job['job_id']}  [bold]{job['status']}[/bold]  {job['url']}")
    if job.get("error"):
        console.print(f"error: {job['error']}")
    console.print(stage_table(job))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a running job: it ends as cancelled, not failed. Example: pageperfect jobs cancel 3f2c…"""
    api_call("POST", f"/v1/jobs/{job_id}/cancel")
    console.print(f"cancel requested for {job_id}")


@jobs_app.command(
    "tune",
    epilog=examples(
        "pageperfect jobs tune 3f2c9a0e-… --max-attempts 10",
        "pageperfect jobs tune 3f2c9a0e-… --max-attempts 3 --retry-delay 30",
    ),
)
def jobs_tune(
    job_id: str = typer.Argument(..., help="The job"),
    max_attempts: Optional[int] = typer.Option(
        None, "--max-attempts", min=1, max=50, help="Attempts per stage, the first included"
    ),
    retry_delay: Optional[float] = typer.Option(
        None, "--retry-delay", min=0.1, max=3600, help="Seconds before the first retry (then doubling)"
    ),
) -> None:
    """Change the retry settings of a running job's remaining stages.

    Stages that have not started get the new policy. Stages already running keep the policy they were scheduled with: Temporal fixes an activity's retry policy when it is scheduled.
    """
    if max_attempts is None and retry_delay is None:
        fail("give --max-attempts, --retry-delay or both")
    body = {k: v for k, v in dict(max_attempts=max_attempts, retry_delay_seconds=retry_delay).items() if v is not None}
    tuned = api_call("POST", f"/v1/jobs/{job_id}/tune", json=body)
    attempts = tuned["max_attempts"] if tuned["max_attempts"] is not None else "the stage table's"
    delay = f"{tuned['retry_delay_seconds']:g} s" if tuned["retry_delay_seconds"] is not None else "the stage table's"
    stages = ", ".join(tuned["applies_to"]) or "none left"
    console.print(
        f"job {job_id}: max attempts {attempts}, first retry after {delay}; applies to {stages}"
        + (f" (running now, unchanged: {', '.join(tuned['running'])})" if tuned.get("running") else ""),
        markup=False,
    )
