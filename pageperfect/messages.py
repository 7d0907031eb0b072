"""The workflows' messages: signals, activity arguments and child-workflow inputs.

They live outside the workflow modules, in one module the workflow sandbox passes through:
the sandbox runs a workflow's own module again for every new run, and would build these
pydantic models again each time (about 5 ms each). Only pydantic, the standard library and
pageperfect.models are imported here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from pageperfect.models import BatchEnding, JobInput, JobOptions, RetrySettings

# ---------------------------------------------------------------- PagePerfect (one job)


class TuneRequest(RetrySettings):
    """New retry settings for the stages a running job has not finished."""


# ---------------------------------------------------------------- PagePerfectWebhook


class WebhookCall(BaseModel):
    """What to announce and where. Ids only: the activity reads the rest from Postgres."""

    url: str
    kind: Literal["job", "batch"]
    id: str
    status: str
    occurred_at: datetime
    queue_prefix: str = "pageperfect"


# ---------------------------------------------------------------- PagePerfectGscImport


class GscImportInput(BaseModel):
    """What to import: a property and a window of days ending `lag_days` before the run."""

    site_url: str = Field(description="The Search Console property: https://example.com/ or sc-domain:example.com")
    days: int = Field(default=28, ge=1, le=480)
    lag_days: int = Field(default=3, ge=0, le=30)  # the last days' numbers are not final yet
    page: str | None = None  # only this page's rows
    queue_prefix: str = "pageperfect"


class GscImportRequest(BaseModel):
    site_url: str
    start_date: str
    end_date: str
    page: str | None = None


# ---------------------------------------------------------------- PagePerfectBatch

DEFAULT_CONCURRENCY = 5
MAX_CONCURRENCY = 50
MAX_BATCH_PAGES = 1000
# A run handles this many pages, then continues as new: about 15 KiB of history a page stays well
# under Temporal's history limits whatever the batch's size.
PAGES_PER_RUN = 200


class BatchInput(BaseModel):
    """The batch workflow's argument: ids and options, never keywords (those are stored as keyword sets)."""

    batch_id: str | None = None  # None: the run makes one (each run of a schedule is a new batch)
    urls: list[str] = Field(default_factory=list)  # pages not stored yet (a schedule's); empty when the API stored them
    concurrency: int = DEFAULT_CONCURRENCY
    jobs: JobOptions = Field(default_factory=JobOptions)  # what every job of the batch shares
    webhook_url: str | None = None
    source: str = "api"
    queue_prefix: str = "pageperfect"
    poll_seconds: float = 30.0  # how often a page's job that the batch did not start is looked at
    pages_per_run: int = PAGES_PER_RUN
    start: int = 0  # the first page of this run (a continued run picks up where the last stopped)
    ended: dict[str, int] = Field(default_factory=dict)  # endings seen by the earlier runs


class OpenBatch(BaseModel):
    batch: BatchInput
    batch_id: str
    workflow_id: str
    run_id: str


class PrepareBatchJob(BaseModel):
    batch_id: str
    position: int
    job_id: str
    jobs: JobOptions
    queue_prefix: str


class PreparedJob(BaseModel):
    """The job to start, or why there is none (the page was refused, or its job is someone else's)."""

    job: JobInput | None = None
    rejected: str | None = None
    linked_job_id: str | None = None
    search_url: bool = True  # False with payload encryption on: search attributes are not encrypted


class LinkRunningJob(BaseModel):
    batch_id: str
    position: int
    own_job_id: str
    workflow_id: str


class RejectBatchPage(BaseModel):
    batch_id: str
    position: int
    own_job_id: str
    reason: str


class CloseBatch(BaseModel):
    batch_id: str
    status: BatchEnding


# ---------------------------------------------------------------- PagePerfectSite


class SiteInput(BaseModel):
    """The site workflow's argument: ids and options. Its pages and keywords are stored as its batch's rows."""

    site_id: str
    batch_id: str
    concurrency: int = DEFAULT_CONCURRENCY
    jobs: JobOptions = Field(default_factory=JobOptions)
    queue_prefix: str = "pageperfect"
    poll_seconds: float = 30.0


class SiteStageInput(BaseModel):
    site_id: str
    score: str = "striking"
    top_gaps: int = 5


class FinalizeSite(BaseModel):
    site_id: str
    status: BatchEnding
    stage: str | None = None
    error: str | None = None
    workflow_id: str
    run_id: str
