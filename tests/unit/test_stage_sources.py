"""The stage table (pageperfect/stages.py) is the only list of stages: everything that names stages agrees with it.

The registry serves each stage's activity on the queue its row names; each stage activity reads the
artifacts of exactly the stages in its `after`; the job requests' `skip_steps` take exactly the
table's names; the mirror's stage rows and the retention read the table's order and artifacts; no
project module keeps a second list of stage names.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap

import pytest

from activities.registry import ACTIVITIES, STAGE_ACTIVITIES, activities_by_queue, activity_name
from db import queries
from pageperfect.models import JobOptions
from pageperfect.services.intake import JobRequest
from pageperfect.stages import (
    ARTIFACT_STAGE,
    STAGE_ARTIFACTS,
    STAGE_NAMES,
    STAGES,
    STAGES_BY_NAME,
    stage_position,
)
from tests.unit.test_architecture import project_sources


def test_the_registry_serves_each_stage_activity_on_its_queue():
    assert [activity_name(f) for f in STAGE_ACTIVITIES] == list(STAGE_NAMES)
    by_queue = activities_by_queue()
    for stage in STAGES:
        served = [kind for kind, functions in by_queue.items() if ACTIVITIES[stage.name] in functions]
        assert served == [stage.queue], f"{stage.name} is served on {served}, its row says {stage.queue}"


def _inputs_read(function) -> set[str]:
    """The stages whose output an activity function reads: artifact_from(inp, "X"), inp.previous["X"] or .get("X")."""
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(function)))
    read = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "artifact_from":
            read.add(ast.literal_eval(node.args[1]))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and ast.unparse(node.func.value).endswith(".previous")
        ):
            read.add(ast.literal_eval(node.args[0]))
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith(".previous"):
            read.add(ast.literal_eval(node.slice))
    return read


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_each_stage_activity_reads_exactly_the_stages_it_comes_after(stage):
    assert _inputs_read(ACTIVITIES[stage.name]) == set(stage.after)


def test_the_check_sees_what_an_activity_reads():
    async def reads_two(inp):
        from activities.common import artifact_from

        await artifact_from(inp, "gap_analysis")
        return inp.previous.get("wait_crawl"), inp.previous["segment_embed"]

    assert _inputs_read(reads_two) == {"gap_analysis", "wait_crawl", "segment_embed"}


@pytest.mark.parametrize("model", [JobRequest, JobOptions])
def test_skip_steps_takes_exactly_the_tables_names(model):
    schema = model.model_json_schema()["properties"]["skip_steps"]
    assert schema["items"]["enum"] == list(STAGE_NAMES)
    assert schema["maxItems"] == len(STAGES)


def test_the_mirror_and_the_retention_read_the_tables_order_and_artifacts():
    assert [stage_position(name) for name in STAGE_NAMES] == list(range(len(STAGES)))
    assert stage_position("finalize_job") == len(STAGES)  # not a stage: after them all
    assert queries.STAGE_ARTIFACTS is STAGE_ARTIFACTS
    assert set(queries._ARTIFACT_ROWS) == set(STAGE_ARTIFACTS.values()) == set(queries._POINTED_AT_BY)
    # the result builder reads each artifact from the last stage storing it: the crawl wait_crawl finished
    assert ARTIFACT_STAGE["crawls"] == "wait_crawl" and set(ARTIFACT_STAGE.values()) <= set(STAGES_BY_NAME)


def _lists_of_stages(source: str) -> list[int]:
    """Lines of tuple, list, set or dict literals naming two or more stages: a second list of stages."""
    names = set(STAGE_NAMES)
    found = []
    for node in ast.walk(ast.parse(source)):
        items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and items:
            named = {item.value for item in items if isinstance(item, ast.Constant) and item.value in names}
            if len(named) >= 2:
                found.append(node.lineno)
    return found


def test_no_module_but_the_stage_table_lists_the_stages():
    seconds = {
        module: lines
        for module, source in project_sources().items()
        if module != "pageperfect.stages" and (lines := _lists_of_stages(source))
    }
    assert seconds == {}, f"stage names listed outside pageperfect/stages.py: {seconds}"
    assert _lists_of_stages(inspect.getsource(importlib.import_module("pageperfect.stages")))  # the check sees one
