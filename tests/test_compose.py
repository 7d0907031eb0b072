"""The production compose file is valid, where docker-compose is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed here")
def test_compose_file_is_valid():
    done = subprocess.run(
        ["docker-compose", "-f", str(REPO / "docker-compose.temporal.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for service in (
        "temporal",
        "temporal-ui",
        "temporal-admin-tools",
        "postgresql",
        "pageperfect-api",
        "pageperfect-worker",
    ):
        assert f"{service}:" in done.stdout
