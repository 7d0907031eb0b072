"""The mirror writer keeps order, retries while Postgres is away, and names the job when it gives up."""

from __future__ import annotations

import logging

from pageperfect.mirror import MirrorWriter


async def test_writes_wait_for_postgres_and_keep_their_order():
    applied: list[str] = []
    outage = {"left": 3}

    def write(name: str):
        async def apply(pool) -> None:
            if outage["left"] > 0:
                outage["left"] -= 1
                raise ConnectionRefusedError("postgres is down")
            applied.append(name)
        return apply

    writer = MirrorWriter(pool=None, give_up_after=30)
    writer.start()
    for name in ("first", "second", "third"):
        writer.submit("job-1", write(name))
    await writer.flush()
    await writer.close()
    assert applied == ["first", "second", "third"] and writer.dropped == 0


async def test_a_write_that_never_lands_is_dropped_with_the_job_named(caplog):
    async def never(pool) -> None:
        raise ConnectionRefusedError("postgres is down")

    writer = MirrorWriter(pool=None, give_up_after=0.2)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="pageperfect.mirror"):
        writer.submit("job-42", never)
        await writer.flush()
    await writer.close()
    assert writer.dropped == 1
    assert "job-42" in caplog.text and "reconcile" in caplog.text
