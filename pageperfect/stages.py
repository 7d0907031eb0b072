"""The one declarative table of stages: names, order, queues, inputs, artifacts, timeouts and retries.

Everything else reads it: the workflow (which stage starts when, on which queue, with which
timeouts), the worker (which activity serves which queue), the mirror (the stage rows and their
order), intake (which names `skip_steps` takes), the result builder (which artifact to read), the
retention (which artifact each stage stores) and the CLI's progress bars. Only the standard
library is imported: the workflow sandbox, the models and db/ all load this module.

A stage starts as soon as the stages in its `after` are done: the crawl and the query clustering
need nothing from each other and run side by side. A stage's activity receives the summaries of
exactly the stages in its `after` (`StageInput.previous`); it reads an artifact of another stage
only where the job skips that stage (the page's latest stored output, activities/common.py).

Adding a stage:
1. One row here: its name, queue, timeouts and retry, `after` (the stages whose artifacts it reads,
   each earlier in the table) and `artifact` (the table its `StageSummary.artifact_id` points into,
   made by a migration in db/migrations/ if new; add it to the retention in db/queries.py).
2. One activity function named after it (`@activity.defn(name=...)`, in activities/, listed in
   `activities/registry.py`), reading its inputs with `artifact_from(inp, stage)` for stages in its
   `after` only. tests/unit/test_stage_sources.py fails until the registry, the activity's inputs and
   every list derived from this table agree.
3. Versioning: runs in flight were started with the old table. Give the new row
   `patch="stage-<name>"`: the workflow schedules it only where `workflow.patched` says the run
   started with it, and the runs that did not see it as skipped, so their histories replay
   (tests/workflows/test_replay.py shows it with a made-up stage). Record a kept history with the
   new stage (`python -m tests.helpers.histories`, a new file beside the old ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

# Kinds of work, each its own task queue so it can be scaled and limited on its own.
WORKFLOW_QUEUE = "workflow"
CRAWL_QUEUE = "crawl"
AI_QUEUE = "ai"  # embedding and LLM calls: network-bound, rate-limited by providers
COMPUTE_QUEUE = "compute"  # CPU-heavy analysis
CONTROL_QUEUE = "control"  # bookkeeping: final job rows and dead letters
ALL_QUEUES = (WORKFLOW_QUEUE, CRAWL_QUEUE, AI_QUEUE, COMPUTE_QUEUE, CONTROL_QUEUE)

# Failures no retry can fix: bad input, blocked addresses, pages that are not there.
PERMANENT_ERRORS = (
    "InvalidUrl",
    "BlockedAddress",
    "NotFound",
    "NotHtml",
    "TooLarge",
    "TooManyRedirects",
    "NoContent",
    "MissingInput",
    "BadInput",
)


@dataclass(frozen=True)
class Retry:
    """A stage's retry policy as data; workflows/stages.py makes the Temporal RetryPolicy of it."""

    initial: timedelta
    backoff: float
    maximum: timedelta
    attempts: int
    non_retryable: tuple[str, ...] = PERMANENT_ERRORS


@dataclass(frozen=True)
class Stage:
    name: str  # also the activity's name
    queue: str
    start_to_close: timedelta
    retry: Retry
    heartbeat: timedelta | None = None
    after: tuple[str, ...] = ()  # the stages whose output this one reads; each earlier in the table
    artifact: str = field(default="", kw_only=True)  # the table StageSummary.artifact_id is a row of
    # A stage added after the first table: the workflow.patched id it is scheduled under (see above).
    patch: str | None = field(default=None, kw_only=True)
    description: str = field(default="", compare=False, kw_only=True)

    def timeouts(self, scale: float = 1.0) -> tuple[timedelta, timedelta | None]:
        """Start-to-close and heartbeat timeouts, scaled for a job that asked for shorter (or longer) ones."""
        return self.start_to_close * scale, (self.heartbeat * scale if self.heartbeat is not None else None)


STAGES: tuple[Stage, ...] = (
    Stage(
        "submit_crawl",
        CRAWL_QUEUE,
        timedelta(seconds=90),
        Retry(timedelta(seconds=5), 2.0, timedelta(minutes=2), 5),
        artifact="crawls",
        description="Fetch the page, or hand it to the external crawl provider",
    ),
    Stage(
        "wait_crawl",
        CRAWL_QUEUE,
        timedelta(minutes=15),
        Retry(timedelta(seconds=5), 2.0, timedelta(minutes=2), 5),
        heartbeat=timedelta(seconds=30),
        after=("submit_crawl",),
        artifact="crawls",
        description="Poll the crawl until it is done",
    ),
    Stage(
        "segment_embed",
        AI_QUEUE,
        timedelta(minutes=10),
        Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5), 5),
        heartbeat=timedelta(seconds=60),
        after=("wait_crawl",),
        artifact="segment_sets",
        description="Split the main content into headed segments and embed them",
    ),
    Stage(
        "keyword_clustering",
        COMPUTE_QUEUE,
        timedelta(minutes=20),
        Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5), 4),
        heartbeat=timedelta(seconds=60),
        artifact="cluster_sets",
        description="Embed the page's queries and group them by search intent",
    ),
    Stage(
        "gap_analysis",
        COMPUTE_QUEUE,
        timedelta(minutes=10),
        Retry(timedelta(seconds=5), 2.0, timedelta(minutes=5), 4),
        heartbeat=timedelta(seconds=60),
        after=("segment_embed", "keyword_clustering"),
        artifact="gap_reports",
        description="Find the clusters the page does not cover and rank them",
    ),
    Stage(
        "rewrite_draft",
        AI_QUEUE,
        timedelta(minutes=15),
        Retry(timedelta(seconds=10), 2.0, timedelta(minutes=5), 5),
        heartbeat=timedelta(seconds=60),
        after=("gap_analysis",),
        artifact="draft_sets",
        description="Draft rewrites for the top gaps",
    ),
)


def check_table(stages: tuple[Stage, ...]) -> None:
    """Every stage has a name of its own and an artifact; every `after` names a stage earlier in the table,
    so the table's order is one the stages can run in."""
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise ValueError(f"stage {stage.name} is in the table twice")
        if not stage.artifact:
            raise ValueError(f"stage {stage.name} names no artifact")
        unknown = [name for name in stage.after if name not in seen]
        if unknown:
            raise ValueError(f"stage {stage.name} comes after {', '.join(unknown)}, which is not an earlier stage")
        seen.add(stage.name)


check_table(STAGES)

STAGES_BY_NAME = {stage.name: stage for stage in STAGES}
STAGE_NAMES = tuple(stage.name for stage in STAGES)
# The table each stage stores its artifact in (StageSummary.artifact_id is a row id there).
STAGE_ARTIFACTS = {stage.name: stage.artifact for stage in STAGES}
# Each artifact table and the stage whose output of it a job's result reads: the last in table
# order that stores it (the crawl that wait_crawl finished, not the ticket submit_crawl made).
ARTIFACT_STAGE = {stage.artifact: stage.name for stage in STAGES}


def queue_name(prefix: str, kind: str) -> str:
    """The task queue of a kind of work for a deployment's prefix: `pageperfect-crawl`."""
    return f"{prefix}-{kind}"


def stage_position(stage: str) -> int:
    """A stage's place in the table (its stage row's `position`); a name not in the table sorts last."""
    return STAGE_NAMES.index(stage) if stage in STAGES_BY_NAME else len(STAGES)
