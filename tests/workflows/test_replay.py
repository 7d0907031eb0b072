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


def _with_a_new_stage(monkeypatch, *, patch: str | None) -> None:
    """The stage table with one more stage at its end, as the table's checklist for adding a stage has it."""
    import dataclasses

    from pageperfect import stages

    extra = dataclasses.replace(
        stages.STAGES_BY_NAME["rewrite_draft"],
        name="publish_draft",
        after=("rewrite_draft",),
        artifact="published_drafts",
        patch=patch,
    )
    monkeypatch.setattr(stages, "STAGES", (*stages.STAGES, extra))


JOB_HISTORIES = [path for path in KEPT if workflow_type(read_history_file(path)) == "PagePerfect"]


@pytest.mark.parametrize("path", JOB_HISTORIES, ids=lambda p: p.stem)
async def test_a_stage_added_under_its_patch_keeps_the_kept_histories_replaying(monkeypatch, path):
    _with_a_new_stage(monkeypatch, patch="stage-publish_draft")
    outcome = await replay_history(read_history_file(path), engine=replayer(make_settings(), quiet=True))
    assert outcome.ok, f"{path.name} no longer replays with the new stage: {outcome.error}"


async def test_a_stage_added_without_a_patch_breaks_the_runs_in_flight(monkeypatch):
    """The check above is not vacuous: the same stage without its patch is scheduled in the old runs."""
    _with_a_new_stage(monkeypatch, patch=None)
    outcome = await replay_history(
        read_history_file(HISTORIES / "demo-completed.json"), engine=replayer(make_settings(), quiet=True)
    )
    assert not outcome.ok
