"""No secret reaches workflow inputs, results, history, logs or the mirror.

A job runs with every secret in play and distinctive — an API key, the OpenAI key (against
the OpenAI-compatible stub) and the crawl provider's key (against a ScraperAPI-style stub,
which fails once so error paths are covered too) — then history, logs and every text
column in Postgres are searched for them.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from temporalio.api.enums.v1 import EventType

from tests.helpers.data import demo_keywords
from tests.helpers.settings import TEST_API_KEY
from tests.openai_server import OpenAIStub

OPENAI_SECRET = "sk-openai-" + uuid.uuid4().hex
SCRAPER_SECRET = "scraper-" + uuid.uuid4().hex
API_SECRET = "pp_api-" + uuid.uuid4().hex
SECRETS = (OPENAI_SECRET, SCRAPER_SECRET, API_SECRET)


class ScraperStub:
    """A ScraperAPI-style async jobs API: refuses the first submit with 503, then finishes every job at once."""

    def __init__(self, page: bytes) -> None:
        stub = self
        self.keys_seen: list[str] = []
        self.submits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.keys_seen.append(body.get("apiKey"))
                stub.submits += 1
                if body.get("apiKey") != SCRAPER_SECRET:
                    return self._answer(401, {"error": "bad key"})
                if stub.submits == 1:
                    return self._answer(503, {"error": "busy"})
                stub.urls[f"job-{stub.submits}"] = body["url"]
                self._answer(200, {"id": f"job-{stub.submits}", "status": "running"})

            def do_GET(self):  # noqa: N802
                job_id = self.path.rsplit("/", 1)[-1]
                self._answer(
                    200,
                    {
                        "id": job_id,
                        "status": "finished",
                        "url": stub.urls[job_id],
                        "response": {
                            "statusCode": 200,
                            "headers": {"content-type": "text/html"},
                            "body": page.decode(),
                        },
                    },
                )

            def _answer(self, status: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.urls: dict[str, str] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


async def test_no_secret_in_history_logs_or_mirror(pipeline_factory, site, client, pool, tmp_root, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    scraper = ScraperStub(site.handler.routes["/index.html"][2])
    try:
        with OpenAIStub() as openai_stub:
            pipeline = await pipeline_factory(
                api_keys=f"{TEST_API_KEY},{API_SECRET}",
                openai_api_key=OPENAI_SECRET,
                openai_base_url=openai_stub.base_url,
                crawl_provider="scraperapi",
                scraper_base_url=scraper.base_url,
                scraper_api_key=SCRAPER_SECRET,
            )
            # The provider fetches the page from its own network: the URL need not resolve here.
            url = f"https://secrets-{uuid.uuid4().hex[:8]}.example.test/page"
            response = await pipeline.http.post(
                "/v1/jobs",
                json={"url": url, "keywords": demo_keywords()},
                headers={"Authorization": f"Bearer {API_SECRET}"},
            )
            assert response.status_code == 202, response.text
            created = response.json()
            job = await pipeline.wait(created["job_id"])
            assert job["status"] == "completed", job
            result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
            # Every secret was really used.
            assert f"Bearer {OPENAI_SECRET}" in openai_stub.authorization
            assert result["providers"]["llm"] != "none" and "openai" in json.dumps(result["providers"]).lower()
            assert SCRAPER_SECRET in scraper.keys_seen and scraper.submits >= 2
    finally:
        scraper.stop()
    assert not _leaks(json.dumps(result))

    # Temporal history of every run of the job's workflow, and the failure it recorded.
    histories = []
    async for execution in client.list_workflows(f"WorkflowId = '{created['workflow_id']}'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    assert histories and any(h.run_id == created["run_id"] for h in histories)
    for history in histories:
        assert not _leaks(history.to_json()), history.run_id
    started = [e for h in histories for e in h.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert any(e.activity_task_started_event_attributes.HasField("last_failure") for e in started)

    # Logs: this process at DEBUG, what it wrote to stdout/stderr, and the Temporal server's log.
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records and not _leaks(logs)
    out, err = capfd.readouterr()
    assert not _leaks(out + err)
    server_log = tmp_root / "temporal.log"
    if server_log.exists():
        assert not _leaks(server_log.read_text(errors="replace"))

    # Every text and JSON column of every table (the mirror tables first among them).
    columns = await pool.fetch(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying', 'json', 'jsonb')"""
    )
    tables = {c["table_name"] for c in columns}
    assert {
        "pageperfect_jobs",
        "pageperfect_job_stages",
        "pageperfect_job_events",
        "pageperfect_dead_letters",
    } <= tables
    events = await pool.fetchval("SELECT count(*) FROM pageperfect_job_events WHERE job_id = $1", created["job_id"])
    assert events > 0
    for column in columns:
        found = await pool.fetchval(
            f'SELECT count(*) FROM "{column["table_name"]}" WHERE "{column["column_name"]}"::text LIKE ANY($1)',
            [f"%{secret}%" for secret in SECRETS],
        )
        assert found == 0, f"a secret is stored in {column['table_name']}.{column['column_name']}"
