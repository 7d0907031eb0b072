"""Waiting for something to become true, with a deadline and a message that says what never happened."""

from __future__ import annotations

import asyncio


async def until(check, *, what: str = "condition", timeout: float = 60, every: float = 0.1):
    """Polls `check()` (async) until it returns something true, and returns that; fails after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)
