"""PagePerfectGscImport: read a Search Console property's page-and-query rows into Postgres.

Run daily by a schedule (pageperfect.services.schedules). The service account's key is read by
the worker from the file PAGEPERFECT_GSC_CREDENTIALS names: it never enters the
schedule, the workflow's input or its history. Deterministic, no I/O.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pageperfect.messages import GscImportInput, GscImportRequest
    from pageperfect.stages import CONTROL_QUEUE, Retry, queue_name
    from workflows.stages import retry_policy

GSC_IMPORT_WORKFLOW = "PagePerfectGscImport"
GSC_IMPORT_ACTIVITY = "import_search_console"
# The client retries 429 and 5xx itself; these retries cover a worker lost mid-import.
GSC_IMPORT_RETRY = retry_policy(
    Retry(
        timedelta(seconds=30),
        2.0,
        timedelta(minutes=10),
        5,
        non_retryable=("MissingCredentials", "SearchConsoleRefused"),
    )
)


@workflow.defn(name=GSC_IMPORT_WORKFLOW)
class PagePerfectGscImportWorkflow:
    @workflow.run
    async def run(self, inp: GscImportInput) -> dict:
        end = workflow.now().date() - timedelta(days=inp.lag_days)
        start = end - timedelta(days=inp.days - 1)
        return await workflow.execute_activity(
            GSC_IMPORT_ACTIVITY,
            GscImportRequest(
                site_url=inp.site_url, start_date=start.isoformat(), end_date=end.isoformat(), page=inp.page
            ),
            task_queue=queue_name(inp.queue_prefix, CONTROL_QUEUE),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=GSC_IMPORT_RETRY,
            result_type=dict,
        )
