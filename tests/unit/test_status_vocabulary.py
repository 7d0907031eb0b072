"""One status vocabulary: the enums in pageperfect/models.py are the statuses the tables allow."""

from __future__ import annotations

import re

import pytest

from db.queries import BATCH_COUNT_KEYS
from pageperfect.models import (
    BATCH_ENDINGS,
    BATCH_PAGE_ENDINGS,
    FINAL_STATUSES,
    BatchPageStatus,
    BatchStatus,
    JobStatus,
)
from tests.helpers.settings import REPO

MIGRATIONS = REPO / "db" / "migrations"


def allowed_statuses(table: str) -> set[str]:
    """The values the CHECK on `table`'s status column allows, as the migration that creates it says."""
    sql = "\n".join(path.read_text(encoding="utf-8") for path in sorted(MIGRATIONS.glob("*.sql")))
    created = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", sql, re.S)
    assert created, f"no CREATE TABLE {table}"
    check = re.search(r"\bstatus\b[^,]*?CHECK \(status IN \(([^)]*)\)\)", created[1], re.S)
    assert check, f"{table}.status has no CHECK"
    return set(re.findall(r"'([a-z_]+)'", check[1]))


@pytest.mark.parametrize(
    ("table", "vocabulary"),
    [("pageperfect_jobs", JobStatus), ("pageperfect_batches", BatchStatus), ("pageperfect_sites", BatchStatus)],
)
def test_each_status_column_allows_exactly_its_vocabulary(table, vocabulary) -> None:
    assert allowed_statuses(table) == {status.value for status in vocabulary}


def test_a_batch_page_is_waiting_its_jobs_status_or_rejected() -> None:
    assert {s.value for s in BatchPageStatus} == {s.value for s in JobStatus} | {"waiting", "rejected"}
    assert BATCH_COUNT_KEYS == tuple(s.value for s in BatchPageStatus)
    assert BATCH_PAGE_ENDINGS == FINAL_STATUSES | {BatchPageStatus.REJECTED}
    assert BATCH_ENDINGS == set(BatchStatus) - {BatchStatus.RUNNING}
