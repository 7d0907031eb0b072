"""Every workflow the workflow queue's worker runs."""

from __future__ import annotations

from workflows.batch import PagePerfectBatchWorkflow
from workflows.gsc_import import PagePerfectGscImportWorkflow
from workflows.pageperfect import PagePerfectWorkflow
from workflows.site import PagePerfectSiteWorkflow
from workflows.webhook import PagePerfectWebhookWorkflow

WORKFLOWS = (
    PagePerfectWorkflow,
    PagePerfectBatchWorkflow,
    PagePerfectWebhookWorkflow,
    PagePerfectGscImportWorkflow,
    PagePerfectSiteWorkflow,
)
