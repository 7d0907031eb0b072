"""Activity functions by name: the stage table names them, the worker registers them."""

from __future__ import annotations

from collections.abc import Callable

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
from workflows.site import FINALIZE_SITE, SITE_STAGE
from workflows.stages import COMPUTE_QUEUE, CONTROL_QUEUE, FINALIZE_ACTIVITY, STAGES

ACTIVITIES: dict[str, Callable] = {
    "submit_crawl": submit_crawl,
    "wait_crawl": wait_crawl,
    "segment_embed": segment_embed,
    "keyword_clustering": keyword_clustering,
    "gap_analysis": gap_analysis,
    "rewrite_draft": rewrite_draft,
    FINALIZE_ACTIVITY: finalize_job,
    # Bookkeeping beside the stages, on the control queue: batches, webhooks, Search Console imports.
    "open_batch": open_batch,
    "prepare_batch_job": prepare_batch_job,
    "link_running_job": link_running_job,
    "batch_job_status": batch_job_status,
    "reject_batch_page": reject_batch_page,
    "close_batch": close_batch,
    "send_webhook": send_webhook,
    "import_search_console": import_search_console,
    # The site workflow's stage over its pages' results, and its ending.
    SITE_STAGE: site_analysis,
    FINALIZE_SITE: finalize_site,
}
CONTROL_ACTIVITIES = (FINALIZE_ACTIVITY, "open_batch", "prepare_batch_job", "link_running_job", "batch_job_status",
                      "reject_batch_page", "close_batch", "send_webhook", "import_search_console",
                      FINALIZE_SITE)
# Activities beside the stage table on another queue: the site stage is CPU work.
OTHER_ACTIVITIES = {SITE_STAGE: COMPUTE_QUEUE}


def activities_by_queue() -> dict[str, list[Callable]]:
    """Which activities each kind of queue serves, read off the stage table."""
    by_queue: dict[str, list[Callable]] = {}
    for stage in STAGES:
        by_queue.setdefault(stage.queue, []).append(ACTIVITIES[stage.name])
    by_queue.setdefault(CONTROL_QUEUE, []).extend(ACTIVITIES[name] for name in CONTROL_ACTIVITIES)
    for name, queue in OTHER_ACTIVITIES.items():
        by_queue.setdefault(queue, []).append(ACTIVITIES[name])
    missing = {s.name for s in STAGES} - set(ACTIVITIES)
    if missing:
        raise RuntimeError(f"stages without an activity: {sorted(missing)}")
    return by_queue
