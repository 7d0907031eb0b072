"""Reports in a real browser: headless Chromium dumps a page's DOM or screenshots it, and says what its console got."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers.settings import REPO

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


def chromium(*args: str, page: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="pp-chromium-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--hide-scrollbars",
                *args,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def console_messages(chromium_stderr: str) -> list[str]:
    """What the page wrote to the console: script errors, blocked loads (CSP), console.* calls."""
    return [line for line in chromium_stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


async def dumped_dom(page: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and what its console got."""
    dumped = await asyncio.to_thread(chromium, "--dump-dom", page=page)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    return dumped.stdout, console_messages(dumped.stderr)


async def screenshot(page: Path, name: str, *, height: int, min_bytes: int) -> None:
    """A 1280-wide screenshot of the page in test-artifacts/NAME.png, of at least `min_bytes`; no console output."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    taken = await asyncio.to_thread(chromium, f"--screenshot={shot}", f"--window-size=1280,{height}", page=page)
    assert taken.returncode == 0 and shot.stat().st_size > min_bytes, taken.stderr[-2000:]
    assert console_messages(taken.stderr) == []
