"""`pageperfect up` as a user runs it: starts everything, serves jobs, stops cleanly, keeps its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from pageperfect.stack import free_port
from tests.integration.test_pipeline import demo_keywords


def _start(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "TEMPORAL_ADDRESS", "OPENAI_API_KEY", "PAGEPERFECT_API_KEYS")}
    env["PAGEPERFECT_ALLOWED_HOSTS"] = "127.0.0.1"
    args = [sys.executable, "-m", "pageperfect.cli", "up", "--data-dir", str(data_dir),
            "--api-port", str(ports["api"]), "--temporal-port", str(ports["temporal"]), "--ui-port", str(ports["ui"])]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_healthy(api: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("pageperfect up never became healthy")


def _stop(process: subprocess.Popen) -> tuple[int, str]:
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    return process.returncode, output


def test_up_serves_stops_cleanly_and_keeps_jobs(tmp_path, site):
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    api = f"http://127.0.0.1:{ports['api']}"
    url = site.add("/up.html", site.handler.routes["/index.html"][2])

    process = _start(tmp_path, ports)
    try:
        _wait_healthy(api, process)
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=10)
        assert ui.status_code == 200  # the Temporal Web UI
        assert httpx.get(f"{api}/docs", timeout=10).status_code == 200
        key = (tmp_path / "api-key").read_text().strip()  # the local key `up` made and printed
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api}/v1/jobs", timeout=10).status_code == 401
        created = httpx.post(f"{api}/v1/jobs", json={"url": url, "keywords": demo_keywords()}, headers=auth,
                             timeout=30).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{api}/v1/jobs/{created['job_id']}", headers=auth, timeout=10).json()["status"] != "completed":
            assert time.monotonic() < deadline, "job did not complete"
            time.sleep(0.3)
    finally:
        code, output = _stop(process)
    assert code == 0, output
    assert f"{api}/docs" in output and f"http://127.0.0.1:{ports['ui']}" in output and key in output

    process = _start(tmp_path, ports)  # same data: jobs and their rows survive
    try:
        _wait_healthy(api, process)
        assert (tmp_path / "api-key").read_text().strip() == key  # the same local key after a restart
        job = httpx.get(f"{api}/v1/jobs/{created['job_id']}", headers=auth, timeout=10).json()
        assert job["status"] == "completed"
        result = httpx.get(f"{api}/v1/jobs/{created['job_id']}/result", headers=auth, timeout=10)
        assert result.status_code == 200 and result.json()["page"]["url"] == url
    finally:
        code, output = _stop(process)
    assert code == 0, output
