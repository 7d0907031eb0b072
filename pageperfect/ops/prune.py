"""Retention: delete the artifacts and vectors of old jobs, keeping what a page or a running job still needs.

`pageperfect prune --older-than DAYS [--dry-run]`. The rules are in db.queries.prune_artifacts;
a dry run runs the same statements in a transaction that is rolled back, so its counts are
exactly what a real run would delete. Job rows, stage rows, events and dead letters stay (the SQL
dashboards read them); Temporal keeps closed runs for the namespace's retention (`pageperfect up`
sets it, docs/OPERATIONS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, UTC

import asyncpg

from db import queries


@dataclass
class PruneReport:
    cutoff: datetime
    dry_run: bool
    removed: dict[str, int]  # table -> rows deleted (or that would be)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


class _DryRun(Exception):
    """Raised inside the transaction to roll it back."""


async def prune(
    pool: asyncpg.Pool, *, older_than_days: float, dry_run: bool = False, now: datetime | None = None
) -> PruneReport:
    if older_than_days < 0:
        raise ValueError("--older-than must be 0 days or more")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    removed: dict[str, int] = {}
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                removed = await queries.prune_artifacts(conn, cutoff)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
    return PruneReport(cutoff=cutoff, dry_run=dry_run, removed=removed)
