"""A bound on job submits in flight, so that load past capacity waits in line instead of collapsing.

Each submit is a Temporal workflow start plus a few Postgres statements; past what the
server takes, more concurrent starts only compete for the same cores and every request
slows down. Requests beyond `concurrency` wait for a slot; beyond `max_waiting` they are
refused at once with 503 and Retry-After, which clients and load balancers understand.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from pageperfect.services.intake import IntakeError


class Admission:
    def __init__(self, concurrency: int, max_waiting: int):
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def slot(self):
        if self._slots.locked() and self._waiting >= self.max_waiting:
            raise IntakeError(
                503,
                f"{self.max_waiting} job submits are already waiting; try again shortly",
                headers={"Retry-After": "1"},
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
