"""Kept histories of every workflow replay against the current code, with the worker's interceptors and converter.

A failure here means a workflow change would break the runs in flight: put it behind
`workflow.patched` (docs/OPERATIONS.md, "Replay: changing the workflow safely"). The histories
and how they are made: tests/helpers/histories.py.
"""

from __future__ import annotations

import pytest

from pageperfect.ops.replay import read_history_file, replay_history, replayer
from tests.helpers.histories import HISTORIES, SCENARIOS, record
from tests.helpers.settings import make_settings
from temporalio.client import WorkflowHistory
from workflows.registry import WORKFLOWS

KEPT = sorted(HISTORIES.glob("*.json"))


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


@pytest.fixture(scope="module")
def engine():
    """The Replayer `pageperfect replay` uses: every workflow, the worker's interceptors and data converter."""
    return replayer(make_settings(), quiet=True)


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.stem)
async def test_kept_history_replays(path, engine):
    outcome = await replay_history(read_history_file(path), engine=engine)
    assert outcome.ok, f"{path.name} no longer replays: {outcome.error}"


def test_every_workflow_has_a_kept_history():
    kept = {workflow_type(read_history_file(path)) for path in KEPT}
    assert {workflow.__temporal_workflow_definition.name for workflow in WORKFLOWS} <= kept


def test_every_scenario_has_its_kept_history():
    assert {path.stem for path in KEPT} >= set(SCENARIOS)


@pytest.mark.slow  # about a second each; the workflow tests beside this file take the same paths
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_a_fresh_run_of_each_scenario_replays(client, engine, name):
    """The scenarios still run (so the histories can be made again) and what they make now replays."""
    history = WorkflowHistory.from_json(name, await record(client, name))
    assert workflow_type(history) == workflow_type(read_history_file(HISTORIES / f"{name}.json"))
    outcome = await replay_history(history, engine=engine)
    assert outcome.ok, outcome.error
