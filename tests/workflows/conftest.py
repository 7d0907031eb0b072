"""The workflows on the session's dev server, their activities mocked (tests/helpers/workflows.py)."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.helpers.workflows import MockActivities, mocked_workers


@pytest.fixture
def mocks() -> MockActivities:
    return MockActivities()


@pytest_asyncio.fixture(loop_scope="session")
async def prefix(client, mocks):
    """The task-queue prefix of this test's workers: the real workflows, the `mocks` as activities."""
    async with mocked_workers(client, mocks) as prefix:
        yield prefix
