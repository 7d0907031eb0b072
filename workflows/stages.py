"""The stage table's Temporal side: its retry policies and the job's ending.

The table itself (names, order, queues, inputs, artifacts, timeouts) is pageperfect/stages.py,
which the workflow, the worker, db/ and the models all read. Only the standard library,
temporalio.common and that table are imported: the workflow sandbox loads this module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from pageperfect.stages import Retry


def retry_policy(retry: Retry, *, max_attempts: int | None = None, initial_seconds: float | None = None) -> RetryPolicy:
    """The Temporal policy of a stage's retry, with a job's own max_attempts and retry delay where it set them."""
    initial = timedelta(seconds=initial_seconds) if initial_seconds is not None else retry.initial
    return RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=retry.backoff,
        maximum_interval=max(retry.maximum, initial),
        maximum_attempts=max_attempts if max_attempts is not None else retry.attempts,
        non_retryable_error_types=list(retry.non_retryable),
    )


# Bookkeeping activity run in every ending; it retries until Postgres takes the write.
FINALIZE_ACTIVITY = "finalize_job"
FINALIZE_TIMEOUT = timedelta(seconds=60)
FINALIZE_RETRY = retry_policy(Retry(timedelta(seconds=2), 2.0, timedelta(minutes=1), 0, non_retryable=()))
