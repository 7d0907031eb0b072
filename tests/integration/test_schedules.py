"""Schedules on the real Temporal server: re-analysis batches, and the daily Search Console import."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowFailureError

from pageperfect.services import schedules
from pageperfect.services.schedules import ScheduleError
from tests.integration.test_batches import pages
from tests.unit.test_gsc import FakeSearchConsole, credentials, new_service_account
from pageperfect.messages import GscImportInput
from workflows.gsc_import import PagePerfectGscImportWorkflow
from tests.helpers.cli import run_merged


async def eventually(check, *, timeout: float = 30, interval: float = 0.3):
    """check() until it returns something truthy (visibility and schedule runs lag a little)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "gave up waiting"
        await asyncio.sleep(interval)


async def listed(client, schedule_id: str):
    return next((s for s in await schedules.list_schedules(client) if s.id == schedule_id), None)


async def started_workflow(client, schedule_id: str) -> str:
    async def action():
        recent = (await client.get_schedule_handle(schedule_id).describe()).info.recent_actions
        return recent[-1].action.workflow_id if recent else None

    return await eventually(action)


async def test_reanalyze_schedule_create_list_pause_trigger_delete(pipeline, site, client, pool):
    schedule_id = f"test-reanalyze-{uuid.uuid4().hex[:8]}"
    urls = pages(site, "scheduled", 2)
    await schedules.create_reanalyze_schedule(
        client,
        schedule_id,
        urls + [urls[1]],
        every=timedelta(days=7),
        settings=pipeline.settings,
        queue_prefix=pipeline.prefix,
        concurrency=2,
    )
    with pytest.raises(ScheduleError, match="exists already"):
        await schedules.create_reanalyze_schedule(
            client, schedule_id, urls, every=timedelta(days=7), settings=pipeline.settings, queue_prefix=pipeline.prefix
        )
    found = await eventually(lambda: listed(client, schedule_id))
    assert (found.kind, found.when, found.paused) == ("reanalyze", "every 7 days", False)
    assert found.next_run is not None and "2 pages" in found.note

    await schedules.pause(client, schedule_id)
    assert (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused
    await eventually(lambda: _paused_in_list(client, schedule_id))

    await schedules.trigger(client, schedule_id)  # runs now, paused or not
    workflow_id = await started_workflow(client, schedule_id)
    assert workflow_id.startswith(f"pageperfect-batch-{schedule_id}")
    summary = await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), timeout=180)
    assert summary["status"] == "completed" and summary["counts"]["completed"] == 2 and summary["total"] == 2
    batch = await pool.fetchrow("SELECT * FROM pageperfect_batches WHERE id = $1", summary["batch_id"])
    assert batch["source"] == f"schedule:{schedule_id}" and batch["workflow_id"] == workflow_id
    api_view = (await pipeline.http.get(f"/v1/batches/{summary['batch_id']}")).json()
    assert sorted(p["url"] for p in api_view["pages"]) == sorted(urls)

    await schedules.unpause(client, schedule_id)
    assert not (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused
    await schedules.delete(client, schedule_id)
    with pytest.raises(ScheduleError, match="no schedule"):
        await schedules.pause(client, schedule_id)
    await eventually(lambda: _gone(client, schedule_id))


async def _paused_in_list(client, schedule_id):
    found = await listed(client, schedule_id)
    return found is not None and found.paused


async def _gone(client, schedule_id):
    return await listed(client, schedule_id) is None


async def test_bad_schedules_are_refused(pipeline, client):
    settings = pipeline.settings
    with pytest.raises(ScheduleError, match="line 2"):
        await schedules.create_reanalyze_schedule(
            client, "bad-urls", ["https://example.com/", "ftp://x/"], every=timedelta(days=1), settings=settings
        )
    with pytest.raises(ScheduleError, match="at least a minute"):
        await schedules.create_reanalyze_schedule(
            client, "too-often", ["https://example.com/"], every=timedelta(seconds=5), settings=settings
        )
    with pytest.raises(ScheduleError, match="webhook_url"):
        await schedules.create_reanalyze_schedule(
            client,
            "bad-hook",
            ["https://example.com/"],
            every=timedelta(days=1),
            settings=settings,
            webhook_url="http://169.254.169.254/",
        )
    with pytest.raises(ScheduleError, match="hour 0-23"):
        await schedules.create_gsc_import_schedule(
            client, "bad-hour", "sc-domain:example.com", settings=settings, hour=25
        )
    with pytest.raises(ScheduleError, match="without spaces"):
        await schedules.create_gsc_import_schedule(client, "a b", "sc-domain:example.com", settings=settings)


@pytest.fixture(scope="module")
def service_account_pem():
    return new_service_account()


async def test_daily_search_console_import(pipeline_factory, client, pool, tmp_path, service_account_pem):
    public_key, pem = service_account_pem
    with FakeSearchConsole(public_key, total_rows=60) as fake:
        key_file = tmp_path / "service-account.json"
        key_file.write_text(json.dumps(credentials(pem, f"{fake.url}/token")))
        pipeline = await pipeline_factory(gsc_credentials_file=key_file, gsc_api_url=fake.url)
        site_url = f"https://gsc-{uuid.uuid4().hex[:6]}.example.com/"
        fake.rows = [
            {**row, "keys": [row["keys"][0].replace("https://example.com/", site_url), row["keys"][1]]}
            for row in fake.rows
        ]
        schedule_id = f"test-gsc-{uuid.uuid4().hex[:8]}"
        await schedules.create_gsc_import_schedule(
            client,
            schedule_id,
            site_url,
            settings=pipeline.settings,
            hour=5,
            minute=30,
            days=28,
            queue_prefix=pipeline.prefix,
        )
        try:
            found = await eventually(lambda: listed(client, schedule_id))
            assert (found.kind, found.when) == ("gsc-import", "daily at 05:30 UTC")
            await schedules.trigger(client, schedule_id)
            workflow_id = await started_workflow(client, schedule_id)
            result = await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), timeout=60)
        finally:
            await schedules.delete(client, schedule_id)

    end = datetime.now(timezone.utc).date() - timedelta(days=3)  # the workflow's clock is UTC
    start = end - timedelta(days=27)
    assert result == {"site_url": site_url, "date_range": f"{start}/{end}", "pages": 2, "rows": 60, "skipped_rows": 0}
    request = fake.query_log[0]["body"]
    assert (request["startDate"], request["endDate"]) == (start.isoformat(), end.isoformat())
    stored = await pool.fetch(
        "SELECT page_url, count(*) AS n FROM gsc_keywords WHERE page_url LIKE $1 "
        "AND date_range = $2 AND source = 'search-analytics-api' GROUP BY page_url",
        site_url + "%",
        f"{start}/{end}",
    )
    assert sorted(r["n"] for r in stored) == [20, 40]
    # The key stays on the worker: not in the schedule, the run's input or its history.
    history = (await client.get_workflow_handle(workflow_id).fetch_history()).to_json()
    assert "PRIVATE KEY" not in history and pem[60:120] not in history and str(key_file) not in history


async def test_search_console_import_without_credentials_fails_with_its_reason(pipeline, client):
    with pytest.raises(WorkflowFailureError) as caught:
        await client.execute_workflow(
            PagePerfectGscImportWorkflow.run,
            GscImportInput(site_url="sc-domain:example.com", queue_prefix=pipeline.prefix),
            id=f"test-gsc-nokey-{uuid.uuid4().hex[:8]}",
            task_queue=f"{pipeline.prefix}-workflow",
            execution_timeout=timedelta(seconds=60),
        )
    cause = caught.value.cause.cause
    assert cause.type == "MissingCredentials" and "PAGEPERFECT_GSC_CREDENTIALS" in cause.message


async def test_schedules_cli(pipeline, client, temporal_server, tmp_path, site):
    listing = tmp_path / "pages.txt"
    listing.write_text("\n".join(pages(site, "cli-schedule", 2)) + "\n")
    schedule_id = f"test-cli-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal_server.address,
        "PAGEPERFECT_QUEUE_PREFIX": pipeline.prefix,
        "PAGEPERFECT_ALLOWED_HOSTS": "127.0.0.1",
        "COLUMNS": "200",
    }

    async def cli(*args: str) -> tuple[int, str]:
        return await run_merged(sys.executable, "-m", "pageperfect.cli", "schedules", *args, env=env, timeout=60)

    code, out = await cli("create", schedule_id, "--reanalyze", str(listing), "--every-days", "3")
    assert code == 0 and "re-analyzes 2 pages every 3 day(s)" in out, out
    await eventually(lambda: listed(client, schedule_id))
    code, out = await cli("list")
    assert code == 0 and schedule_id in out and "every 3 days" in out, out
    code, out = await cli("pause", schedule_id)
    assert code == 0 and (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused
    code, out = await cli("delete", schedule_id)
    assert code == 0, out
    code, out = await cli("unpause", schedule_id)
    assert code == 1 and f"no schedule '{schedule_id}'" in out, out
    code, out = await cli("create", "x", "--reanalyze", str(listing), "--gsc-site", "sc-domain:example.com")
    assert code == 1 and "one of --reanalyze" in out, out
