"""The stage table's `after` lists: what may run side by side, and a table that cannot run is refused."""

import dataclasses
from datetime import timedelta

import pytest

from pageperfect.stages import STAGES, STAGES_BY_NAME, Retry, Stage, check_table


def _stage(name: str, after: tuple[str, ...] = ()) -> Stage:
    return Stage(
        name,
        "compute",
        timedelta(seconds=1),
        Retry(timedelta(seconds=1), 2.0, timedelta(seconds=1), 1),
        after=after,
        artifact="things",
    )


def test_the_crawl_and_the_clustering_need_nothing_from_each_other():
    assert STAGES_BY_NAME["keyword_clustering"].after == ()
    assert STAGES_BY_NAME["submit_crawl"].after == ()
    assert set(STAGES_BY_NAME["gap_analysis"].after) == {"segment_embed", "keyword_clustering"}


def test_every_stage_but_the_first_two_waits_for_an_earlier_one():
    check_table(STAGES)
    names = [stage.name for stage in STAGES]
    for stage in STAGES:
        assert all(names.index(before) < names.index(stage.name) for before in stage.after)


@pytest.mark.parametrize(
    "table, message",
    [
        ((_stage("a", after=("b",)), _stage("b")), "stage a comes after b"),
        ((_stage("a"), _stage("b", after=("missing",))), "stage b comes after missing"),
        ((_stage("a", after=("a",)),), "stage a comes after a"),
        ((_stage("a"), _stage("a")), "stage a is in the table twice"),
        ((_stage("a"), dataclasses.replace(_stage("b"), artifact="")), "stage b names no artifact"),
    ],
)
def test_a_stage_after_a_later_or_unknown_stage_is_refused(table, message):
    with pytest.raises(ValueError, match=message):
        check_table(table)
