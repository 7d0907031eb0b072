"""The CI dependency audit (.ci/audit.py): fails on a known vulnerability, skips when it cannot look anything up.

A stand-in `pip_audit` module on PYTHONPATH plays each of pip-audit's answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"


def _run_with(tmp_path: Path, report: dict | None, exit_code: int, stderr: str = "") -> subprocess.CompletedProcess:
    fake = tmp_path / "pip_audit"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import json, sys\n"
        "out = sys.argv[sys.argv.index('--output') + 1]\n"
        f"report = {json.dumps(report)!r}\n"
        "if report != 'null':\n"
        "    open(out, 'w').write(report)\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, str(AUDIT)], env=env, capture_output=True, text=True, timeout=60)


def test_a_known_vulnerability_fails(tmp_path):
    report = {
        "dependencies": [
            {
                "name": "requests",
                "version": "2.19.0",
                "vulns": [{"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"], "aliases": []}],
            },
            {"name": "httpx", "version": "0.28.1", "vulns": []},
        ]
    }
    run = _run_with(tmp_path, report, 1)
    assert run.returncode == 1
    assert "FAILED" in run.stdout and "requests 2.19.0: PYSEC-2018-28 (fixed in: 2.20.0)" in run.stdout


@pytest.mark.parametrize(
    ("report", "exit_code", "stderr", "reason"),
    [
        (None, 1, "ConnectionError: Max retries exceeded with url: /pypi/httpx/0.28.1/json", "Max retries"),
        (
            {"dependencies": [{"name": "httpx", "skip_reason": "Dependency not found on PyPI"}], "fixes": []},
            0,
            "",
            "none of the 1 installed packages",
        ),
    ],
)
def test_unreachable_vulnerability_data_skips(tmp_path, report, exit_code, stderr, reason):
    run = _run_with(tmp_path, report, exit_code, stderr)
    assert run.returncode == 0
    assert "SKIPPED" in run.stdout and reason in run.stdout


def test_a_clean_audit_passes(tmp_path):
    report = {
        "dependencies": [
            {"name": "httpx", "version": "0.28.1", "vulns": []},
            {"name": "local-thing", "skip_reason": "not on PyPI"},
        ],
        "fixes": [],
    }
    run = _run_with(tmp_path, report, 0)
    assert run.returncode == 0
    assert "passed, no known vulnerabilities in 1 package(s); 1 could not be looked up" in run.stdout
