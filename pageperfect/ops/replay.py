"""Replay recorded workflow histories against the current workflow code.

A history that no longer replays means a code change would break the runs still in
flight (or a redrive of old ones): the change needs a `workflow.patched` branch.
The Replayer is set up exactly as the worker is: same workflow, interceptors and
data converter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import AsyncIterator

from temporalio.client import Client, WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows.pageperfect import WORKFLOW_NAME
from workflows.registry import WORKFLOWS

CLOSED_RUNS_QUERY = f"WorkflowType='{WORKFLOW_NAME}' AND ExecutionStatus != 'Running'"


class HistoryFileError(ValueError):
    """A file that is not a `temporal workflow show --output json` export."""


@dataclass
class ReplayOutcome:
    workflow_id: str
    run_id: str | None
    error: str | None = None
    nondeterministic: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def replayer(settings=None, *, quiet: bool = False) -> Replayer:
    """A Replayer set up as the workers are (payload keys, where encryption is on, from the settings).

    quiet: leave out the SDK core's own warning per failed replay (the outcome says it already).
    """
    from pageperfect.runtime.temporal import data_converter
    from pageperfect.runtime.worker import worker_interceptors  # the worker's own list, so replay sees what workers run

    runtime = None
    if quiet:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
            )
        )
    return Replayer(
        workflows=list(WORKFLOWS),
        data_converter=data_converter(settings),
        interceptors=worker_interceptors(None),
        runtime=runtime,
    )


def read_history_file(path: Path) -> WorkflowHistory:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HistoryFileError(f"{path} is not readable JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("events"), list) or not data["events"]:
        raise HistoryFileError(
            f"{path} holds no history events; export one with `temporal workflow show --workflow-id ID --output json`"
        )
    try:
        return WorkflowHistory.from_json(Path(path).stem, data)
    except Exception as err:  # the protobuf parser says what is wrong in its own words
        raise HistoryFileError(f"{path} is not a Temporal history ({err})") from err


def _run_id(history: WorkflowHistory) -> str | None:
    started = history.events[0].workflow_execution_started_event_attributes if history.events else None
    return (started.original_execution_run_id or None) if started else None


async def replay_history(history: WorkflowHistory, *, engine: Replayer | None = None) -> ReplayOutcome:
    result = await (engine or replayer()).replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    outcome = ReplayOutcome(workflow_id=history.workflow_id, run_id=_run_id(history))
    if failure is not None:
        outcome.error = _failure_text(failure)
        outcome.nondeterministic = isinstance(failure, NondeterminismError)
    return outcome


def _failure_text(failure: Exception) -> str:
    """The core's own message ("[TMPRL1100] Nondeterminism error: ...") without the struct around it."""
    text = str(failure)
    inner = _CORE_MESSAGE.search(text)
    return (inner.group(1) if inner else f"{type(failure).__name__}: {text}").splitlines()[0][:500]


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


async def fetch_history(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()


async def closed_histories(
    client: Client, *, extra_query: str | None = None, limit: int | None = None
) -> AsyncIterator[WorkflowHistory]:
    """The histories of every closed PagePerfect run (newest first), optionally filtered further."""
    query = CLOSED_RUNS_QUERY + (f" AND ({extra_query})" if extra_query else "")
    async for history in client.list_workflows(query, limit=limit).map_histories():
        yield history
