"""The mirror writer keeps order, retries while Postgres is away, batches what is waiting into one
transaction, loses only a write Postgres refuses, and names the job when it gives up."""

from __future__ import annotations

import logging
import uuid

import pytest

from pageperfect.runtime.mirror import MirrorWriter


@pytest.fixture
async def probe(pool):
    """A table of its own for each test: the writes below record what they did in it."""
    table = f"mirror_probe_{uuid.uuid4().hex[:8]}"
    await pool.execute(f"CREATE TABLE {table} (seq SERIAL, name TEXT NOT NULL, txid BIGINT NOT NULL)")
    yield table
    await pool.execute(f"DROP TABLE {table}")


def recording(table: str, name: str):
    async def write(conn) -> None:
        await conn.execute(f"INSERT INTO {table} (name, txid) VALUES ($1, txid_current())", name)

    return write


async def names(pool, table: str) -> list[str]:
    return [r["name"] for r in await pool.fetch(f"SELECT name FROM {table} ORDER BY seq")]


async def test_writes_wait_for_postgres_and_keep_their_order(pool, probe):
    outage = {"left": 2}  # refused twice: waits 0.5 s, then a doubled 1 s, then goes through

    def write(name: str):
        async def apply(conn) -> None:
            if outage["left"] > 0:
                outage["left"] -= 1
                raise ConnectionRefusedError("postgres is down")
            await recording(probe, name)(conn)

        return apply

    writer = MirrorWriter(pool, give_up_after=30)
    writer.start()
    for name in ("first", "second", "third"):
        writer.submit("job-1", write(name))
    await writer.flush()
    await writer.close()
    assert await names(pool, probe) == ["first", "second", "third"] and writer.dropped == 0


async def test_waiting_writes_go_in_one_transaction(pool, probe):
    writer = MirrorWriter(pool, batch_size=100)
    for i in range(50):  # queued before the writer runs: they are all waiting at once
        writer.submit(f"job-{i}", recording(probe, f"w{i}"))
    writer.start()
    await writer.flush()
    await writer.close()
    rows = await pool.fetch(f"SELECT name, txid FROM {probe} ORDER BY seq")
    assert [r["name"] for r in rows] == [f"w{i}" for i in range(50)]
    assert len({r["txid"] for r in rows}) == 1


async def test_a_refused_write_loses_only_itself(pool, probe, caplog):
    async def bad_row(conn) -> None:
        await conn.execute(f"INSERT INTO {probe} (name, txid) VALUES (NULL, 0)")  # NOT NULL violation

    writer = MirrorWriter(pool)
    writer.submit("job-a", recording(probe, "before"))
    writer.submit("job-bad", bad_row)
    writer.submit("job-b", recording(probe, "after"))
    with caplog.at_level(logging.ERROR, logger="pageperfect.mirror"):
        writer.start()
        await writer.flush()
    await writer.close()
    assert await names(pool, probe) == ["before", "after"]
    assert writer.dropped == 1 and "job-bad" in caplog.text


async def test_a_write_that_never_lands_is_dropped_with_the_job_named(pool, caplog):
    async def never(conn) -> None:
        raise ConnectionRefusedError("postgres is down")

    writer = MirrorWriter(pool, give_up_after=0.2)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="pageperfect.mirror"):
        writer.submit("job-42", never)
        await writer.flush()
    await writer.close()
    assert writer.dropped == 1
    assert "job-42" in caplog.text and "reconcile" in caplog.text
