"""Webhooks: a signed POST for every ending, retried by Temporal until the receiver takes it."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pageperfect.services.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from tests.helpers.batches import HangOn, replays, wait_batch
from tests.helpers.data import demo_keywords, pages

SECRET = "whsec-the-test-suite"


class Receiver:
    """A webhook receiver on loopback: records every POST; answers from a script per path, then 200."""

    def __init__(self):
        self.received: list[dict] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    statuses = receiver.script.get(self.path) or []
                    status = statuses.pop(0) if statuses else 200
                    receiver.received.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "answered": status}
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    async def deliveries(self, path: str, count: int = 1, timeout: float = 60) -> list[dict]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with self.lock:
                got = [r for r in self.received if r["path"] == path]
            if len(got) >= count:
                return got
            assert asyncio.get_running_loop().time() < deadline, f"{len(got)} of {count} deliveries to {path}"
            await asyncio.sleep(0.1)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def signed_event(delivery: dict) -> dict:
    """The delivery's JSON, after checking its signature the way a receiver would."""
    assert verify(SECRET, delivery["body"], delivery["headers"][SIGNATURE_HEADER])
    assert not verify("another secret", delivery["body"], delivery["headers"][SIGNATURE_HEADER])
    return json.loads(delivery["body"])


async def test_completed_failed_and_cancelled_jobs_are_announced(pipeline_factory, site, receiver, client):
    pipeline = await pipeline_factory(wrap_crawler=HangOn, webhook_secret=SECRET)
    (url,) = pages(site, "webhook-ok", 1)
    done = await pipeline.submit(url=url, keywords=demo_keywords()[:10], webhook_url=receiver.url("/done"))
    failed = await pipeline.submit(url=site.base_url + "/webhook-missing.html", webhook_url=receiver.url("/failed"))
    hanging = await pipeline.submit(
        url=site.add("/hang-webhook.html", "<p>x</p>"), webhook_url=receiver.url("/cancelled")
    )
    await pipeline.wait(hanging["job_id"], statuses=("processing",))
    assert (await pipeline.http.post(f"/v1/jobs/{hanging['job_id']}/cancel")).status_code == 202

    for created, path, status in (
        (done, "/done", "completed"),
        (failed, "/failed", "failed"),
        (hanging, "/cancelled", "cancelled"),
    ):
        assert (await pipeline.wait(created["job_id"]))["status"] == status
        (delivery,) = await receiver.deliveries(path)
        event = signed_event(delivery)
        assert event["type"] == f"job.{status}" and event["data"]["status"] == status
        assert event["data"]["job_id"] == created["job_id"] and event["data"]["url"] == created["url"]
        assert event["data"]["workflow_id"] == created["workflow_id"]
        assert delivery["headers"][DELIVERY_HEADER] == event["id"] == f"pageperfect-webhook-job-{created['job_id']}"
        assert delivery["headers"]["Content-Type"] == "application/json"
        await replays(client, created["workflow_id"], pipeline.settings)  # with the delivery's start in it
    assert signed_event((await receiver.deliveries("/done"))[0])["data"]["stages"]["rewrite_draft"] == "completed"
    assert "NotFound" in signed_event((await receiver.deliveries("/failed"))[0])["data"]["error"]

    # The secret is the worker's alone: not in the job's history, nor in the delivery's.
    for workflow_id in (done["workflow_id"], f"pageperfect-webhook-job-{done['job_id']}"):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        assert SECRET not in history.to_json()
        await replays(client, workflow_id, pipeline.settings)


async def test_a_failing_receiver_gets_the_retries(pipeline_factory, site, receiver, client):
    pipeline = await pipeline_factory(webhook_secret=SECRET)
    receiver.script["/flaky"] = [500, 503]
    (url,) = pages(site, "webhook-flaky", 1)
    created = await pipeline.submit(url=url, keywords=demo_keywords()[:10], webhook_url=receiver.url("/flaky"))
    assert (await pipeline.wait(created["job_id"]))["status"] == "completed"
    deliveries = await receiver.deliveries("/flaky", count=3)
    assert [d["answered"] for d in deliveries] == [500, 503, 200]
    events = [signed_event(d) for d in deliveries]  # every attempt is signed afresh
    assert {e["id"] for e in events} == {f"pageperfect-webhook-job-{created['job_id']}"}
    assert {json.dumps(e, sort_keys=True) for e in events} == {json.dumps(events[0], sort_keys=True)}
    handle = client.get_workflow_handle(f"pageperfect-webhook-job-{created['job_id']}")
    assert (await handle.result())["status"] == 200
    await asyncio.sleep(1)
    assert len(await receiver.deliveries("/flaky", count=3)) == 3  # and no more once it was taken


async def test_a_batch_is_announced_once_it_ends(pipeline_factory, site, receiver):
    pipeline = await pipeline_factory(webhook_secret=SECRET)
    urls = pages(site, "webhook-batch", 2)
    created = (
        await pipeline.http.post(
            "/v1/batches",
            json={
                "urls": urls,
                "keywords": {u: demo_keywords()[:10] for u in urls},
                "webhook_url": receiver.url("/batch"),
            },
        )
    ).json()
    assert (await wait_batch(pipeline, created["batch_id"]))["status"] == "completed"
    (delivery,) = await receiver.deliveries("/batch")
    event = signed_event(delivery)
    assert event["type"] == "batch.completed" and event["data"]["batch_id"] == created["batch_id"]
    assert event["data"]["counts"]["completed"] == 2 and event["data"]["total"] == 2


async def test_webhook_urls_go_through_the_address_guard(pipeline, site):
    url = site.base_url + "/index.html"
    for hook in ("http://169.254.169.254/hook", "file:///etc/passwd", "http://10.1.2.3/hook"):
        response = await pipeline.http.post("/v1/jobs", json={"url": url, "webhook_url": hook})
        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("webhook_url: ")


async def test_jobs_without_a_webhook_start_no_delivery(pipeline, site, client):
    (url,) = pages(site, "webhook-none", 1)
    created = await pipeline.submit(url=url, keywords=demo_keywords()[:10])
    await pipeline.wait(created["job_id"])
    kinds = [
        e.WhichOneof("attributes")
        async for e in client.get_workflow_handle(created["workflow_id"]).fetch_history_events()
    ]
    assert "start_child_workflow_execution_initiated_event_attributes" not in kinds
