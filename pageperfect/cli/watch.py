"""Live progress of a job and its result, for the terminal."""

from __future__ import annotations

import asyncio

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from pageperfect.models import FINAL_STATUSES, STAGE_ENDINGS, StageStatus
from pageperfect.stages import STAGE_NAMES


def _stage_line(stage: dict) -> str:
    text = stage["status"]
    if stage.get("reused"):
        text += " (reused)"
    if stage.get("attempt_count", 0) > 1 or stage["status"] == "retrying":
        text += f", attempt {stage['attempt_count']}" + (
            f"/{stage['max_attempts']}" if stage.get("max_attempts") else ""
        )
    if stage["status"] in (StageStatus.RETRYING, StageStatus.FAILED) and stage.get("last_error"):
        text += f": {stage['last_error'][:70]}"
    return text


class WatchError(RuntimeError):
    """The API answered with an error while a job was being watched."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message") or body.get("detail")) if isinstance(body, dict) else str(body)


def _clock(iso: str | None) -> str:
    return iso[11:19] if iso and len(iso) >= 19 else ""


def attempt_news(before: tuple[int, str] | None, stage: dict) -> str | None:
    """A line for what changed in a stage's attempts since the last look, if anything did."""
    attempt, status = stage.get("attempt_count", 0), stage["status"]
    if before == (attempt, status):
        return None
    of = f"/{stage['max_attempts']}" if stage.get("max_attempts") else ""
    error = (stage.get("last_error") or "")[:120]
    if status == "retrying":
        when = _clock(stage.get("next_retry_at"))
        return f"{stage['stage']}: attempt {attempt}{of} failed: {error}" + (
            f"; next attempt at {when}" if when else ""
        )
    if status == StageStatus.PROCESSING and attempt > 1:
        return f"{stage['stage']}: attempt {attempt}{of} started"
    if status == StageStatus.FAILED:
        return f"{stage['stage']}: failed after {attempt} attempt{'s' if attempt != 1 else ''}: {error}"
    return None


POLL_SECONDS = 0.3


async def watch_job(http: httpx.AsyncClient, job_id: str, console: Console) -> dict:
    """A bar per stage, updated until the job ends, and a line for each retry as it happens; returns the final job."""
    seen: dict[str, tuple[int, str]] = {}
    # markup=False: error texts come from pages and providers and may hold [brackets].
    with Progress(
        TextColumn("{task.fields[stage]:<20}", markup=False),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[state]}", markup=False),
        console=console,
        transient=False,
    ) as progress:
        tasks = {name: progress.add_task("", total=1, stage=name, state="pending") for name in STAGE_NAMES}
        while True:
            response = await http.get(f"/v1/jobs/{job_id}")
            if response.status_code >= 400:
                raise WatchError(f"{response.status_code}: {_detail(response)}")
            job = response.json()
            for stage in job.get("stages", []):
                news = attempt_news(seen.get(stage["stage"]), stage)
                if news:
                    progress.console.print(news, markup=False, highlight=False)
                seen[stage["stage"]] = (stage.get("attempt_count", 0), stage["status"])
                task = tasks.get(stage["stage"])
                if task is not None:
                    progress.update(
                        task, completed=1 if stage["status"] in STAGE_ENDINGS else 0, state=_stage_line(stage)
                    )
            if job["status"] in FINAL_STATUSES:
                return job
            await asyncio.sleep(POLL_SECONDS)


def stage_table(job: dict) -> Table:
    table = Table("stage", "status", "attempts", "duration", "last error")
    for stage in job.get("stages", []):
        duration = f"{stage['duration_ms'] / 1000:.2f} s" if stage.get("duration_ms") is not None else ""
        table.add_row(
            stage["stage"],
            stage["status"] + (" (reused)" if stage.get("reused") else ""),
            f"{stage['attempt_count']}" + (f"/{stage['max_attempts']}" if stage.get("max_attempts") else ""),
            duration,
            (stage.get("last_error") or "")[:60],
        )
    return table


def print_result(result: dict, console: Console, *, top: int = 10) -> None:
    page, stats = result["page"], result["stats"]
    # Page and query text is untrusted: printed as Text, never read as Rich markup.
    console.print(Text(f"\n{page.get('title') or page['url']}", style="bold"))
    coverage = stats.get("coverage_score")
    console.print(
        f"{stats['segments']} segments, {stats['keywords']} queries in {stats['clusters']} clusters; "
        f"{stats['gaps']} gaps; coverage " + (f"{coverage:.0%} of impressions" if coverage is not None else "n/a")
    )
    if result["providers"].get("note"):
        console.print(f"[yellow]{result['providers']['note']}[/yellow]")
    table = Table("rank", "missing intent", "queries", "impressions", "position", "score", "why")
    for rank, gap in enumerate([g for g in result["gaps"] if g["has_gap"]][:top], start=1):
        table.add_row(
            str(rank),
            Text(gap["representative"]),
            str(len(gap["keywords"])),
            f"{gap['total_impressions']:,.0f}",
            f"{gap['avg_position']:.1f}",
            f"{gap['opportunity_score']:.3f}",
            Text(why(gap)),
        )
    console.print(table)
    ranks = {g["cluster_id"]: rank for rank, g in enumerate([g for g in result["gaps"] if g["has_gap"]], start=1)}
    for draft in result["drafts"]:
        label = "Draft" if draft["kind"] == "draft" else "Brief"
        gap_rank = ranks.get(draft["cluster_id"])
        title = (
            f"\n{label} for gap {gap_rank} (cluster {draft['cluster_id']})"
            if gap_rank
            else f"\n{label} for cluster {draft['cluster_id']}"
        )
        if draft.get("suggested_heading"):
            title += f" — {draft['suggested_heading']}"
        console.print(Text(title, style="bold"))
        # An insertion repeats the passage it follows: show only what is new.
        text, original = draft["draft"], draft.get("original") or ""
        if original and text.startswith(original):
            text = text[len(original) :].strip()
        console.print(Text(clip_lines(text, MAX_DRAFT_LINES)))


MAX_DRAFT_LINES = 30


def clip_lines(text: str, limit: int) -> str:
    """The first `limit` lines of a text, whole, and how many more there are."""
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    return "\n".join(lines[:limit] + [f"… {len(lines) - limit} more lines"])


def why(gap: dict, width: int = 60) -> str:
    """One line on why a cluster is a gap: its coverage, what decided, the words the page lacks, or the closest
    passage and its similarity."""
    explanation = gap.get("explanation") or {}
    best = gap.get("best_match") or {}
    if gap.get("coverage") is None:
        similarity = f" ({best['similarity']:.2f})" if best.get("similarity") is not None else ""
        return (best.get("text") or "")[: width - len(similarity)] + similarity
    parts = [f"coverage {gap['coverage']:.2f}"]
    if gap.get("decided_by") == "llm":
        parts.append("judged by the LLM")
    missing = (explanation.get("words") or {}).get("missing") or []
    if missing:
        parts.append("missing: " + ", ".join(missing[:4]))
    elif best.get("text"):
        parts.append(f"closest: {best['text'][:30]}")
    return "; ".join(parts)[:width]
