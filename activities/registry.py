"""The activity functions, each registered under the name its `@activity.defn` gives it.

The stage activities are named after their rows of the stage table (pageperfect/stages.py),
which also says the queue each is served on; the others are bookkeeping on the control queue.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity

from activities.batch import (
    batch_job_status,
    close_batch,
    link_running_job,
    open_batch,
    prepare_batch_job,
    reject_batch_page,
)
from activities.crawl import submit_crawl, wait_crawl
from activities.finalize import finalize_job
from activities.gap_analysis import gap_analysis
from activities.keyword_clustering import keyword_clustering
from activities.rewrite_draft import rewrite_draft
from activities.search_console import import_search_console
from activities.segment_embed import segment_embed
from activities.site import finalize_site, site_analysis
from activities.webhook import send_webhook
from pageperfect.stages import COMPUTE_QUEUE, CONTROL_QUEUE, STAGES

STAGE_ACTIVITIES: tuple[Callable, ...] = (
    submit_crawl,
    wait_crawl,
    segment_embed,
    keyword_clustering,
    gap_analysis,
    rewrite_draft,
)
# Bookkeeping beside the stages, on the control queue: the job's ending, batches, webhooks, Search Console imports.
CONTROL_ACTIVITIES: tuple[Callable, ...] = (
    finalize_job,
    open_batch,
    prepare_batch_job,
    link_running_job,
    batch_job_status,
    reject_batch_page,
    close_batch,
    send_webhook,
    import_search_console,
    finalize_site,
)
# The site workflow's stage over its pages' results: CPU work, on the compute queue.
SITE_ACTIVITIES: tuple[Callable, ...] = (site_analysis,)


def activity_name(function: Callable) -> str:
    """The name Temporal knows an activity function by (its `@activity.defn`)."""
    name = activity._Definition.must_from_callable(function).name
    if name is None:  # a dynamic activity: the stages and the bookkeeping have names
        raise ValueError(f"{function.__name__} is a dynamic activity")
    return name


ACTIVITIES: dict[str, Callable] = {
    activity_name(f): f for f in (*STAGE_ACTIVITIES, *CONTROL_ACTIVITIES, *SITE_ACTIVITIES)
}


def activities_by_queue() -> dict[str, list[Callable]]:
    """Which activities each kind of queue serves: each stage's on the queue its row of the stage table names."""
    stages = {activity_name(f): f for f in STAGE_ACTIVITIES}
    if set(stages) != {stage.name for stage in STAGES}:
        raise RuntimeError(
            f"the stage activities {sorted(stages)} are not the stage table's {sorted(stage.name for stage in STAGES)}"
        )
    by_queue: dict[str, list[Callable]] = {}
    for stage in STAGES:
        by_queue.setdefault(stage.queue, []).append(stages[stage.name])
    by_queue.setdefault(CONTROL_QUEUE, []).extend(CONTROL_ACTIVITIES)
    by_queue.setdefault(COMPUTE_QUEUE, []).extend(SITE_ACTIVITIES)
    return by_queue
