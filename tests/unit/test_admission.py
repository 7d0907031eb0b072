"""The bound on job submits in flight: waits in line, then refuses with 503 and Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from api.admission import Admission
from pageperfect.services.intake import IntakeError


async def hold_until(admission: Admission, release: asyncio.Event) -> None:
    async with admission.slot():
        await release.wait()


async def one_inside_one_waiting(admission: Admission, release: asyncio.Event) -> tuple[asyncio.Task, asyncio.Task]:
    """A submit holding the only slot until `release`, and one waiting in line behind it."""
    holder = asyncio.create_task(hold_until(admission, release))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold_until(admission, release))
    await asyncio.sleep(0)
    return holder, waiter


async def test_submits_beyond_the_bound_wait_for_a_slot():
    admission = Admission(concurrency=2, max_waiting=10)
    inside, most_inside = 0, 0

    async def submit():
        nonlocal inside, most_inside
        async with admission.slot():
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(submit() for _ in range(8)))
    assert most_inside == 2
    assert admission.waiting == 0


async def test_a_full_line_is_refused_with_retry_after():
    admission = Admission(concurrency=1, max_waiting=1)
    release = asyncio.Event()
    holder, waiter = await one_inside_one_waiting(admission, release)
    assert admission.waiting == 1
    with pytest.raises(IntakeError) as refused:
        async with admission.slot():
            pass
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    release.set()
    await asyncio.gather(holder, waiter)
    async with admission.slot():  # room again once the line has gone
        pass


async def test_a_cancelled_waiter_gives_its_place_back():
    admission = Admission(concurrency=1, max_waiting=5)
    release = asyncio.Event()
    holder, waiter = await one_inside_one_waiting(admission, release)
    waiter.cancel()  # the client went away while waiting
    await asyncio.gather(waiter, return_exceptions=True)
    assert admission.waiting == 0
    release.set()
    await holder
    async with admission.slot():
        pass
