"""The one declarative table of stages, read by the workflow, the worker and the mirror.

Adding a stage is one row here and one activity function named after it. A stage
starts as soon as the stages in its `after` are done: the crawl and the query
clustering need nothing from each other and run side by side.
Only the standard library and temporalio.common are imported: the workflow
sandbox loads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.common import RetryPolicy

# Kinds of work, each its own task queue so it can be scaled and limited on its own.
WORKFLOW_QUEUE = "workflow"
CRAWL_QUEUE = "crawl"
AI_QUEUE = "ai"  # embedding and LLM calls: network-bound, rate-limited by providers
COMPUTE_QUEUE = "compute"  # CPU-heavy analysis
CONTROL_QUEUE = "control"  # bookkeeping: final job rows and dead letters
ALL_QUEUES = (WORKFLOW_QUEUE, CRAWL_QUEUE, AI_QUEUE, COMPUTE_QUEUE, CONTROL_QUEUE)

# Failures no retry can fix: bad input, blocked addresses, pages that are not there.
PERMANENT_ERRORS = (
    "InvalidUrl", "BlockedAddress", "NotFound", "NotHtml", "TooLarge", "TooManyRedirects", "NoContent",
    "MissingInput", "BadInput",
)


@dataclass(frozen=True)
class Retry:
    initial: timedelta
    backoff: float
    maximum: timedelta
    attempts: int
    non_retryable: tuple[str, ...] = PERMANENT_ERRORS

    def policy(self, *, max_attempts: int | None = None, initial_seconds: float | None = None) -> RetryPolicy:
        """The Temporal policy, with a job's own max_attempts and retry delay where it set them."""
        initial = timedelta(seconds=initial_seconds) if initial_seconds is not None else self.initial
        return RetryPolicy(
            initial_interval=initial,
            backoff_coefficient=self.backoff,
            maximum_interval=max(self.maximum, initial),
            maximum_attempts=max_attempts if max_attempts is not None else self.attempts,
            non_retryable_error_types=list(self.non_retryable),
        )


@dataclass(frozen=True)
class Stage:
    name: str  # also the activity's name
    queue: str
    start_to_close: timedelta
    retry: Retry
    heartbeat: timedelta | None = None
    after: tuple[str, ...] = ()  # the stages whose output this one reads; each earlier in the table
    description: str = field(default="", compare=False)

    def timeouts(self, scale: float = 1.0) -> tuple[timedelta, timedelta | None]:
        """Start-to-close and heartbeat timeouts, scaled for a job that asked for shorter (or longer) ones."""
        return self.start_to_close * scale, (self.heartbeat * scale if self.heartbeat is not None else None)


STAGES: tuple[Stage, ...] = (
    Stage("submit_crawl", CRAWL_QUEUE, timedelta(seconds=90),
          Retry(timedelta(seconds=5), 2.0, timedelta(minutes=2), 5),
          description="Fetch the page, or hand it to the external crawl provider"),
    Stage("wait_crawl", CRAWL_QUEUE, timedelta(minutes=15),
          Retry(timedelta(seconds=5), 2.0, timedelta(minutes=2), 5),
          heartbeat=timedelta(seconds=30), after=("submit_crawl",),
          description="Poll the crawl until it is done"),
    Stage("segment_embed", AI_QUEUE, timedelta(minutes=10),
          Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5), 5),
          heartbeat=timedelta(seconds=60), after=("wait_crawl",),
          description="Split the main content into headed segments and embed them"),
    Stage("keyword_clustering", COMPUTE_QUEUE, timedelta(minutes=20),
          Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5), 4),
          heartbeat=timedelta(seconds=60),
          description="Embed the page's queries and group them with DBSCAN"),
    Stage("gap_analysis", COMPUTE_QUEUE, timedelta(minutes=10),
          Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5), 4),
          heartbeat=timedelta(seconds=60), after=("segment_embed", "keyword_clustering"),
          description="Find the clusters the page does not cover and rank them"),
    Stage("rewrite_draft", AI_QUEUE, timedelta(minutes=15),
          Retry(timedelta(seconds=10), 2.0, timedelta(minutes=5), 5),
          heartbeat=timedelta(seconds=60), after=("gap_analysis",),
          description="Draft rewrites for the top gaps"),
)

STAGES_BY_NAME = {stage.name: stage for stage in STAGES}


def check_order(stages: tuple[Stage, ...]) -> None:
    """Every `after` names a stage earlier in the table, so the table's order is one the stages can run in."""
    seen: set[str] = set()
    for stage in stages:
        unknown = [name for name in stage.after if name not in seen]
        if unknown:
            raise ValueError(f"stage {stage.name} comes after {', '.join(unknown)}, which is not an earlier stage")
        seen.add(stage.name)


check_order(STAGES)

# Bookkeeping activity run in every ending; it retries until Postgres takes the write.
FINALIZE_ACTIVITY = "finalize_job"
FINALIZE_TIMEOUT = timedelta(seconds=60)
FINALIZE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), maximum_attempts=0)


def queue_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}"
