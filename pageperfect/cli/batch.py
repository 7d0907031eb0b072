"""`pageperfect batch FILE`: one job per page, a few at a time, with one progress bar.

FILE is a list of URLs, one per line (blank lines and # comments skipped), or a
page-and-query CSV (columns page, query, clicks, impressions, ctr, position), whose
rows become each page's keywords. Goes through the API at PAGEPERFECT_API_URL, else `pageperfect up`'s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pageperfect.cli.common import api_call, console, err_console, fail, finish
from pageperfect.models import BATCH_PAGE_ENDINGS, BatchPageStatus, BatchStatus

batch_app = typer.Typer()


def is_page_query_csv(data: bytes) -> bool:
    """Whether the file's header names page and query columns (then it is a CSV, not a URL list)."""
    from pageperfect.sources.gsc import is_page_query_file

    return is_page_query_file(data)


def read_url_list(data: bytes) -> list[str]:
    lines = [line.strip() for line in data.decode("utf-8-sig", "replace").splitlines()]
    urls = [line for line in lines if line and not line.startswith("#")]
    if urls and urls[0].lower() in ("url", "urls", "page", "pages"):  # a one-column CSV's header
        urls = urls[1:]
    return urls


def _counts_text(counts: dict) -> str:
    shown = [
        f"{counts[k]} {k}"
        for k in (
            BatchPageStatus.COMPLETED,
            BatchPageStatus.PROCESSING,
            BatchPageStatus.QUEUED,
            BatchPageStatus.WAITING,
            BatchPageStatus.FAILED,
            BatchPageStatus.CANCELLED,
            BatchPageStatus.REJECTED,
        )
        if counts.get(k)
    ]
    return ", ".join(shown) or "starting"


def watch_batch(batch_id: str) -> dict:
    """One bar for the whole batch, until it has ended; returns the batch."""
    with Progress(
        TextColumn("batch"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[counts]}"),
        console=console,
        transient=False,
    ) as progress:
        task = None
        while True:
            batch = api_call("GET", f"/v1/batches/{batch_id}", params={"pages": "false"})
            if task is None:
                task = progress.add_task("", total=batch["total"] or 1, counts="")
            progress.update(task, completed=batch["ended"], counts=_counts_text(batch["counts"]))
            if batch["status"] != BatchStatus.RUNNING:
                return batch
            time.sleep(1.0)


@batch_app.command("batch")
def batch(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="URLs one per line, or a page-and-query CSV"),
    concurrency: int = typer.Option(5, "--concurrency", "-c", min=1, max=50, help="Jobs running at once"),
    webhook_url: Optional[str] = typer.Option(None, "--webhook-url", help="Signed POST when the batch ends"),
    force_update: bool = typer.Option(False, "--force-update", help="Run every stage again, reuse nothing"),
    priority: int = typer.Option(0, "--priority", min=0, max=10, help="0 (default) to 10 (most urgent)"),
    max_attempts: Optional[int] = typer.Option(None, "--max-attempts", min=1, max=50),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Show progress until the batch ends"),
) -> None:
    """Analyze many pages: one job per page, --concurrency at a time, one progress bar.

    Examples: pageperfect batch pages.txt -c 10 ;  pageperfect batch performance-by-page.csv
    """
    data = file.read_bytes()
    shared = {
        "force_update": force_update,
        "priority": priority,
        **({"max_attempts": max_attempts} if max_attempts else {}),
    }
    if is_page_query_csv(data):
        import json

        created = api_call(
            "POST",
            "/v1/batches/csv",
            files={"file": (file.name, data, "text/csv")},
            data={
                "concurrency": str(concurrency),
                "options": json.dumps(shared),
                **({"webhook_url": webhook_url} if webhook_url else {}),
            },
        )
    else:
        urls = read_url_list(data)
        if not urls:
            fail(f"{file} has no URLs (one per line; # starts a comment)")
        created = api_call(
            "POST", "/v1/batches", json={"urls": urls, "concurrency": concurrency, "webhook_url": webhook_url, **shared}
        )
    dropped = f" ({created['duplicates_dropped']} duplicate URLs dropped)" if created["duplicates_dropped"] else ""
    console.print(f"batch {created['batch_id']}: {created['pages']} pages, {concurrency} at a time{dropped}")
    if not wait:
        console.print(f"follow it: {created['status_url']}")
        finish(0)
    try:
        ended = watch_batch(created["batch_id"])
    except KeyboardInterrupt:
        err_console.print(f"stopped watching; the batch runs on: {created['status_url']}")
        finish(130)
    console.print(f"batch {ended['status']}: {_counts_text(ended['counts'])}")
    pages = api_call("GET", f"/v1/batches/{created['batch_id']}")["pages"]
    troubled = [p for p in pages if p["status"] in BATCH_PAGE_ENDINGS - {BatchPageStatus.COMPLETED}]
    if troubled:
        table = Table("page", "status", "job", "why")
        for page in troubled[:50]:
            table.add_row(page["url"], page["status"], page["job_id"] or "", (page["error"] or "")[:80])
        console.print(table)
    finish(0 if ended["status"] == BatchStatus.COMPLETED and not troubled else 1)
