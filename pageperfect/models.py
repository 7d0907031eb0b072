"""Data shapes shared by the API, the workflow, the activities and the analysis.

Only pydantic, the standard library and the stage table are imported here: the workflow
sandbox loads this module, so it must stay light and free of I/O.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pageperfect.stages import STAGE_NAMES


class JobStatus(StrEnum):
    """A job's status, as its row (pageperfect_jobs.status), the API, the CLI and the workflow's progress say it.

    A str: it compares equal to the text Postgres and JSON hold, and serializes as that text.
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StageStatus(StrEnum):
    """A stage's status in a job (pageperfect_job_stages.status, the progress query, the CLI's bars)."""

    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    REUSED = "reused"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A stage with one of these will not run again in its job.
STAGE_ENDINGS = frozenset(
    {StageStatus.COMPLETED, StageStatus.REUSED, StageStatus.SKIPPED, StageStatus.FAILED, StageStatus.CANCELLED}
)

# The endings: a job with one of these has stopped, and its row is not reopened.
FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
FinalStatus = Literal[JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]


class BatchStatus(StrEnum):
    """A batch's status (pageperfect_batches.status), and a site analysis's (pageperfect_sites.status): running
    until it ends as one of BATCH_ENDINGS."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


BATCH_ENDINGS = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED})
BatchEnding = Literal[BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED]


class BatchPageStatus(StrEnum):
    """Where a page of a batch (or of a site analysis) is: waiting for its turn, its job's status once it has
    one, refused at intake (rejected, no job made), or cancelled with its batch before it got a job. The
    batch's counts (queries.batch_counts) hold every one of these, in this order."""

    WAITING = "waiting"
    QUEUED = JobStatus.QUEUED.value
    PROCESSING = JobStatus.PROCESSING.value
    COMPLETED = JobStatus.COMPLETED.value
    FAILED = JobStatus.FAILED.value
    CANCELLED = JobStatus.CANCELLED.value
    REJECTED = "rejected"


# What the batch workflow's progress also counts a page as: its job's row was gone when the batch
# looked it up (batch_job_status's answer), or the page's own task raised.
JOB_GONE = "gone"
PAGE_ERROR = "error"

# A page with one of these is done with: its job ended, or it never gets one.
BATCH_PAGE_ENDINGS = frozenset({*(BatchPageStatus(s) for s in FINAL_STATUSES), BatchPageStatus.REJECTED})

StageName = Literal[STAGE_NAMES]  # type: ignore[valid-type]
ScoreName = Literal["striking", "legacy"]
ClusterMethod = Literal["intents", "dbscan"]
# The longest query kept. Search Console records prompts typed into AI assistants (a real export holds a
# 1,231-character one), so the limit is far above any search box; a longer field is a broken file.
MAX_QUERY_CHARS = 20_000


def _storable(text: str) -> str:
    """Text Postgres can store: no NUL characters (text and JSONB refuse them)."""
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    return text


class KeywordRow(BaseModel):
    """One Search Console row: a query and its performance for one page."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    clicks: float = Field(default=0, ge=0)
    impressions: float = Field(default=0, ge=0)
    ctr: float = Field(default=0, ge=0, le=1, description="Click-through rate as a fraction (0.0417, not 4.17%).")
    position: float = Field(default=0, ge=1, le=1000, description="Average position, 1 is the top.")

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, value: str) -> str:
        # Already single-spaced (every whitespace but " " is unprintable, NUL too): the common case, a fast check.
        if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
            return value
        value = " ".join(value.split())
        if not value:
            raise ValueError("query is empty")
        return _storable(value)

    @field_validator("clicks", "impressions", "ctr", "position")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class KeywordFilters(BaseModel):
    """The old system's keyword filters, applied per job or per import."""

    model_config = ConfigDict(extra="forbid")

    min_position: float | None = Field(default=None, ge=0)
    max_position: float | None = Field(default=None, ge=0)
    min_impressions: float | None = Field(default=None, ge=0)
    min_clicks: float | None = Field(default=None, ge=0)
    max_keywords: int | None = Field(default=None, ge=1, le=100_000)
    sort_by: Literal["impressions", "clicks", "position"] = "impressions"
    brand_terms: list[str] = Field(default_factory=list, max_length=200)

    @field_validator("brand_terms")
    @classmethod
    def _storable_terms(cls, value: list[str]) -> list[str]:
        return [_storable(term) for term in value]


class AnalysisOptions(BaseModel):
    """Per-job analysis knobs; None means the embedding provider's calibrated default."""

    model_config = ConfigDict(extra="forbid")

    method: ClusterMethod | None = Field(
        default=None, description="How queries are grouped: 'intents' (communities of a query graph) or 'dbscan'."
    )
    eps: float | None = Field(default=None, gt=0, lt=2, description="DBSCAN radius (cosine distance).")
    min_samples: int | None = Field(default=None, ge=1, le=1000, description="DBSCAN's min_samples.")
    neighbors: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Links per query and view of the query graph: the intents' grouping, and whether a cluster "
        "whose queries disagree splits into two intents.",
    )
    resolution: float | None = Field(
        default=None, gt=0, le=10, description="'intents': Louvain resolution; above 1 gives smaller groups."
    )
    gap_threshold: float | None = Field(
        default=None,
        gt=-1,
        lt=1,
        description="A cluster is a gap below this coverage (evidence) or best similarity (cosine, lexical).",
    )
    judge: bool = Field(
        default=True,
        description="With a chat model configured, ask it about the clusters nearest the coverage threshold.",
    )
    judge_max: int = Field(default=8, ge=0, le=50, description="At most this many clusters go to the judge.")
    score: ScoreName = "striking"
    top_gaps: int = Field(default=3, ge=0, le=50)
    filters: KeywordFilters = Field(default_factory=KeywordFilters)
    include_long_queries: bool = Field(
        default=False,
        description="Cluster long or prompt-like queries too (more than 32 words, or an "
        "instruction to an assistant: pageperfect/analysis/long_queries.py); by default "
        "they are kept and counted but left out of the clusters.",
    )


class RetrySettings(BaseModel):
    """A job's retry settings and their bounds: a new job's, a batch's jobs', a running job's tune."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int | None = Field(default=None, ge=1, le=50)
    retry_delay_seconds: float | None = Field(default=None, ge=0.1, le=3600)


class JobOptions(RetrySettings):
    """What a job is asked to do besides its page, with its bounds: POST /v1/jobs, a batch's every job, a schedule."""

    skip_steps: list[StageName] = Field(default_factory=list, max_length=len(STAGE_NAMES))
    force_update: bool = False
    priority: int = Field(default=0, ge=0, le=10, description="0 (default) to 10 (most urgent)")
    options: AnalysisOptions = Field(default_factory=AnalysisOptions)


class JobInput(BaseModel):
    """The workflow's single argument. Ids and small options only: never HTML or secrets."""

    job_id: str
    page_id: int
    url: str
    queue_prefix: str = "pageperfect"
    keyword_set_id: int | None = None
    skip_steps: list[str] = Field(default_factory=list)
    force_update: bool = False
    priority: int = 0
    max_attempts: int | None = None
    retry_delay_seconds: float | None = None
    reuse_window_seconds: float = 24 * 3600
    # Stage timeouts as a multiple of the stage table's (PAGEPERFECT_STAGE_TIMEOUT_SCALE at intake).
    timeout_scale: float = 1.0
    options: AnalysisOptions = Field(default_factory=AnalysisOptions)
    # Where the job's ending is announced (a signed POST); the secret stays on the worker.
    webhook_url: str | None = None


class StageInput(BaseModel):
    """What every stage activity receives: the job, plus the summaries of the stages before it."""

    job: JobInput
    previous: dict[str, dict] = Field(default_factory=dict)


class StageSummary(BaseModel):
    """A stage's small result as it goes into history: counts, ids, timings."""

    stage: str
    status: Literal[StageStatus.COMPLETED, StageStatus.REUSED, StageStatus.SKIPPED] = StageStatus.COMPLETED
    artifact_id: int | None = None
    counts: dict[str, float] = Field(default_factory=dict)
    info: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    duration_ms: float = 0


class JobOutcome(BaseModel):
    """What the finalize activity writes: the job's final state and, on failure, its dead letter."""

    job: JobInput
    status: FinalStatus
    stage: str | None = None
    failure_reason: str | None = None
    error_details: str | None = None
    attempt_count: int = 0
    summaries: dict[str, dict] = Field(default_factory=dict)
    workflow_id: str = ""
    run_id: str = ""


class StageProgress(BaseModel):
    stage: str
    status: StageStatus = StageStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobProgress(BaseModel):
    """What the workflow's `progress` query answers."""

    job_id: str
    status: str
    current_stage: str | None
    max_attempts: int | None
    retry_delay_seconds: float | None
    stages: list[StageProgress]
