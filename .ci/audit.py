"""Dependency audit: pip-audit over the installed environment, against PyPI's vulnerability data.

Fails (exit 1) on a known vulnerability. Where the vulnerability data cannot be reached, or
knows none of the installed versions, it says so and skips (exit 0): being offline never
fails CI. Run with the project's venv: .venv/bin/python .ci/audit.py [pip-audit options,
e.g. --ignore-vuln GHSA-…].
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

TIME_LIMIT = 100  # seconds; .ci/run allows a little more around it


def main(extra: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "audit.json"
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "--progress-spinner",
            "off",
            "--skip-editable",
            "--timeout",
            "15",
            "--format",
            "json",
            "--output",
            str(report),
            *extra,
        ]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            return skip(f"pip-audit did not finish in {TIME_LIMIT} s")
        except FileNotFoundError as err:
            return skip(f"pip-audit could not run ({err})")
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError):
            lines = (run.stderr or run.stdout).strip().splitlines()
            return skip(f"pip-audit gave no report ({lines[-1] if lines else f'exit {run.returncode}'})")

    dependencies = data.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audited = [d for d in dependencies if "skip_reason" not in d]
    if vulnerable:
        print(f"dependency audit: FAILED, {len(vulnerable)} package(s) with known vulnerabilities:")
        for dep in vulnerable:
            for vuln in dep["vulns"]:
                fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
                print(f"  {dep['name']} {dep.get('version', '')}: {vuln['id']} (fixed in: {fixes})")
        return 1
    if run.returncode != 0:
        lines = (run.stderr or run.stdout).strip().splitlines()
        return skip(f"pip-audit exited {run.returncode} ({lines[-1] if lines else 'no message'})")
    if not audited:
        return skip(
            f"none of the {len(dependencies)} installed packages could be looked up "
            "in the vulnerability data (offline, or versions it does not know)"
        )
    unaudited = len(dependencies) - len(audited)
    print(
        f"dependency audit: passed, no known vulnerabilities in {len(audited)} package(s)"
        + (f"; {unaudited} could not be looked up" if unaudited else "")
    )
    return 0


def skip(reason: str) -> int:
    print(f"dependency audit: SKIPPED, the vulnerability database could not be used: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
