"""`python -m bench --quick` runs every benchmark to the end and each reports against its target."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench import BENCHMARKS

REPO = Path(__file__).resolve().parents[1]
RATIO_LINE = re.compile(r"^RATIO (?P<name>[\w.]+): (?P<value>\S+) \(target .+\) (?:PASS|MISS)$", re.MULTILINE)


def test_quick_run_reports_a_ratio_for_every_benchmark():
    # A guard against a hang, not a speed check: the quick run takes 4-5 minutes alone on 2 cores, more beside
    # other work.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    reported = [m["name"] for m in RATIO_LINE.finditer(done.stdout)]
    for name in BENCHMARKS:
        assert any(r.startswith(f"{name}.") for r in reported), f"{name} printed no RATIO line:\n{done.stdout}"
    assert "CRASH" not in done.stdout
