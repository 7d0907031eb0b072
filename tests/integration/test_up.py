"""`pageperfect up` as a user runs it: starts everything, serves jobs, stops cleanly, keeps its data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pageperfect.runtime.stack import free_port
from pageperfect.runtime.temporal import temporal_binary
from tests.helpers.cli import start_up, stop_up, wait_healthy
from tests.helpers.data import demo_keywords


def _run_job(api: str, auth: dict[str, str], url: str) -> dict:
    """Submit a job through the API and wait for it to complete; the API's answer to the submit."""
    created = httpx.post(
        f"{api}/v1/jobs", json={"url": url, "keywords": demo_keywords()}, headers=auth, timeout=30
    ).json()
    deadline = time.monotonic() + 60
    while httpx.get(f"{api}/v1/jobs/{created['job_id']}", headers=auth, timeout=10).json()["status"] != "completed":
        assert time.monotonic() < deadline, "job did not complete"
        time.sleep(0.3)
    return created


def test_up_serves_stops_cleanly_and_keeps_jobs(tmp_path, site):
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    api = f"http://127.0.0.1:{ports['api']}"
    url = site.add("/up.html", site.handler.routes["/index.html"][2])

    process = start_up(tmp_path, ports)
    try:
        wait_healthy(api, process)
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=10)
        assert ui.status_code == 200  # the Temporal Web UI
        assert httpx.get(f"{api}/docs", timeout=10).status_code == 200
        key = (tmp_path / "api-key").read_text().strip()  # the local key `up` made and printed
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api}/v1/jobs", timeout=10).status_code == 401
        created = _run_job(api, auth, url)
        described = subprocess.run(
            [
                temporal_binary(),
                "operator",
                "namespace",
                "describe",
                "--address",
                f"127.0.0.1:{ports['temporal']}",
                "--namespace",
                "default",
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        # The embedded server keeps closed runs for DEFAULT_RETENTION_DAYS (its own default is one day).
        assert json.loads(described.stdout)["config"]["workflowExecutionRetentionTtl"] == f"{30 * 86400}s"
    finally:
        code, output = stop_up(process)
    assert code == 0, output
    assert "closed runs stay in Temporal for 30 days" in output
    assert f"{api}/docs" in output and f"http://127.0.0.1:{ports['ui']}" in output and key in output

    process = start_up(tmp_path, ports)  # same data: jobs and their rows survive
    try:
        wait_healthy(api, process)
        assert (tmp_path / "api-key").read_text().strip() == key  # the same local key after a restart
        job = httpx.get(f"{api}/v1/jobs/{created['job_id']}", headers=auth, timeout=10).json()
        assert job["status"] == "completed"
        result = httpx.get(f"{api}/v1/jobs/{created['job_id']}/result", headers=auth, timeout=10)
        assert result.status_code == 200 and result.json()["page"]["url"] == url
    finally:
        code, output = stop_up(process)
    assert code == 0, output


def _bare_env() -> dict[str, str]:
    """No address, no data dir, no key: only what `up` left in the data dir can tell a command where things are."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAGEPERFECT_", "TEMPORAL_")) and k not in ("DATABASE_URL", "OPENAI_API_KEY")
    }


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pageperfect.cli", *args],
        env=_bare_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_commands_find_the_stack_up_runs_with_no_variables_set(tmp_path, site):
    """After `pageperfect up`, the operator commands reach its Temporal, Postgres and API with nothing set."""
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}  # none of them the defaults
    api = f"http://127.0.0.1:{ports['api']}"
    data_dir = tmp_path / ".pageperfect"  # the default data dir, seen from tmp_path
    url = site.add("/up-found.html", site.handler.routes["/index.html"][2])

    process = start_up(data_dir, ports)
    try:
        wait_healthy(api, process)
        auth = {"Authorization": f"Bearer {(data_dir / 'api-key').read_text().strip()}"}
        created = _run_job(api, auth, url)

        reconciled = _cli("mirror", "reconcile", "--check", cwd=tmp_path)
        assert reconciled.returncode == 0, reconciled.stderr
        assert reconciled.stdout.splitlines()[-1] == "0 difference(s)"
        replayed = _cli("replay", "--all", cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert f"ok                 {created['workflow_id']} {created['run_id']}" in replayed.stdout
        assert replayed.stdout.splitlines()[-1] == "1 replayed, 0 failed"
        listed = _cli("jobs", "list", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert created["job_id"][:8] in listed.stdout and "completed" in listed.stdout
        dead = _cli("dead-letters", "list", cwd=tmp_path)
        assert dead.returncode == 0, dead.stderr
        assert "reason" in dead.stdout and created["job_id"][:8] not in dead.stdout  # the table, empty

        # A Postgres-only command joins up's Postgres and leaves it running.
        keys = _cli("keys", "list", cwd=tmp_path)
        assert keys.returncode == 0, keys.stderr
        assert httpx.get(f"{api}/v1/jobs", headers=auth, timeout=10).status_code == 200

        # From another directory the root option names the data dir; an address given wins over it.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        assert created["job_id"][:8] in _cli("--data-dir", str(data_dir), "jobs", "list", cwd=elsewhere).stdout
        nowhere = _cli("--temporal-address", f"127.0.0.1:{free_port()}", "replay", "--all", cwd=tmp_path)
        assert nowhere.returncode == 1 and "did not answer" in nowhere.stderr and nowhere.stderr.count("\n") == 1
    finally:
        code, output = stop_up(process)
    assert code == 0, output
    assert not (data_dir / "stack.json").exists()  # the record goes with the stack
