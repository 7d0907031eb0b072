"""Payload encryption: a job runs with every payload encrypted; only the keys (and the codec endpoint) read them."""

from __future__ import annotations

import base64
import json
import os
import uuid

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.worker import Replayer

from api.app import create_app
from pageperfect.runtime.codec import ENCODING, EncryptionCodec, PayloadKeyError
from pageperfect.runtime.temporal import data_converter
from pageperfect.runtime.worker import worker_interceptors
from tests.helpers.data import demo_keywords
from tests.helpers.faults import FlakyCrawler
from tests.helpers.settings import TEST_API_KEY, make_settings
from workflows.pageperfect import INPUTS_ARE_AFTER, STAGES_WHEN_READY, PagePerfectWorkflow

UI_ORIGIN = "http://127.0.0.1:8233"


def _payloads(message, skip=("search_attributes",)):
    """Every Payload inside a proto message, except search attributes (plain by design)."""
    for field, value in message.ListFields():
        if field.message_type is None or field.name in skip:
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            items = list(value.values()) if value_field.message_type is not None else []
            for item in items:
                if isinstance(item, Payload):
                    yield item
                else:
                    yield from _payloads(item, skip)
            continue
        for item in [value] if isinstance(value, Message) else value:
            if isinstance(item, Payload):
                yield item
            else:
                yield from _payloads(item, skip)


def _is_patch_marker(event) -> bool:
    return (
        event.HasField("marker_recorded_event_attributes")
        and event.marker_recorded_event_attributes.marker_name == "core_patch"
    )


def _new_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def payload_key():
    return _new_key()


async def test_encrypted_job_completes_and_its_history_is_unreadable_without_the_key(
    pipeline_factory, site, client, pool, payload_key
):
    encoded_key = base64.b64encode(payload_key).decode()
    pipeline = await pipeline_factory(
        payload_key=f"k1:{encoded_key}", wrap_crawler=lambda inner: FlakyCrawler(inner, failures=1)
    )
    marker = f"encrypted-{uuid.uuid4().hex[:12]}"
    url = site.add(f"/{marker}.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords(), retry_delay_seconds=0.2)
    job = await pipeline.wait(created["job_id"])
    assert job["status"] == "completed", job
    # The mirror still gets readable errors: it reads them in the worker, before encryption.
    crawl = next(s for s in job["stages"] if s["stage"] == "submit_crawl")
    assert "injected 503 number 1" in crawl["last_error"]
    result = (await pipeline.http.get(f"/v1/jobs/{created['job_id']}/result")).json()
    assert result["page"]["url"] == url and result["gaps"]

    # Raw history, as the Temporal server stores it (fetch_history does not decode).
    history = await client.get_workflow_handle(created["workflow_id"], run_id=created["run_id"]).fetch_history()
    raw = history.to_json()
    assert marker not in raw and "injected 503" not in raw
    payloads = [p for event in history.events if not _is_patch_marker(event) for p in _payloads(event)]
    assert len(payloads) >= 12  # input, six stage inputs and results, the outcome…
    # The SDK writes its patch markers itself, in plain JSON: they hold the change's name and nothing else.
    patches = (STAGES_WHEN_READY, INPUTS_ARE_AFTER)
    markers = [json.loads(p.data) for event in history.events if _is_patch_marker(event) for p in _payloads(event)]
    assert markers and all(
        set(m.values()) <= {*patches, False} if isinstance(m, dict) else m in (*patches, False) for m in markers
    ), markers
    assert {p.metadata["encoding"] for p in payloads} == {ENCODING}
    assert {p.metadata["encryption-key-id"] for p in payloads} == {b"k1"}

    # The codec endpoint decodes them (header key, and path key with CORS as the Web UI calls it).
    body = {"payloads": [json_format.MessageToDict(p) for p in payloads]}
    decoded = await pipeline.http.post("/codec/decode", json=body)
    assert decoded.status_code == 200, decoded.text
    plain = [json_format.ParseDict(p, Payload()) for p in decoded.json()["payloads"]]
    assert len(plain) == len(payloads) and all(p.metadata["encoding"] != ENCODING for p in plain)
    assert any(marker.encode() in p.data for p in plain)
    async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=30) as ui:
        preflight = await ui.options(
            f"/codec/key/{TEST_API_KEY}/decode",
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        from_ui = await ui.post(
            f"/codec/key/{TEST_API_KEY}/decode", json=body, headers={"Origin": UI_ORIGIN, "X-Namespace": "default"}
        )
        assert from_ui.status_code == 200 and from_ui.json() == decoded.json()
        assert from_ui.headers["access-control-allow-origin"] == UI_ORIGIN
        assert (await ui.post("/codec/key/not-a-key/decode", json=body)).status_code == 401
    # Encoding through the endpoint gives payloads the workers can read.
    encoded = await pipeline.http.post("/codec/encode", json=decoded.json())
    again = [json_format.ParseDict(p, Payload()) for p in encoded.json()["payloads"]]
    assert await EncryptionCodec([("k1", payload_key)]).decode(again) == plain

    # The Replayer replays the history with the same converter, and not without the key.
    settings = make_settings(payload_key=f"k1:{encoded_key}")
    replayer = Replayer(
        workflows=[PagePerfectWorkflow], data_converter=data_converter(settings), interceptors=worker_interceptors(None)
    )
    await replayer.replay_workflow(history)

    # A wrong key decodes nothing: not in the codec, not through another API's codec endpoint.
    wrong = make_settings(payload_key=f"k1:{base64.b64encode(_new_key()).decode()}")
    with pytest.raises(PayloadKeyError):
        await EncryptionCodec([("k1", _new_key())]).decode(payloads[:1])
    wrong_app = create_app(wrong, pool=pool, client=client)
    wrong_app.state.pool = pool  # what its lifespan does; ASGITransport runs none
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wrong_app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    ) as other:
        refused = await other.post("/codec/decode", json=body)
        assert refused.status_code == 400 and "does not decrypt" in refused.json()["detail"]
    failing = Replayer(
        workflows=[PagePerfectWorkflow], data_converter=data_converter(wrong), interceptors=worker_interceptors(None)
    )
    outcome = await failing.replay_workflow(history, raise_on_replay_failure=False)
    assert outcome.replay_failure is not None


async def test_search_attributes_leave_the_url_out_when_encrypting(pipeline_factory, site, client, payload_key):
    pipeline = await pipeline_factory(payload_key=base64.b64encode(payload_key).decode())
    url = site.add(f"/sa-{uuid.uuid4().hex[:8]}.html", site.handler.routes["/index.html"][2])
    created = await pipeline.submit(url=url, keywords=demo_keywords()[:10])
    assert (await pipeline.wait(created["job_id"]))["status"] == "completed"
    description = await client.get_workflow_handle(created["workflow_id"], run_id=created["run_id"]).describe()
    names = {key.name for key, _ in description.typed_search_attributes}
    assert "PagePerfectJobId" in names and "PagePerfectUrl" not in names


async def test_codec_endpoint_without_encryption_passes_payloads_through(pipeline):
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    body = {"payloads": [json_format.MessageToDict(payload)]}
    for operation in ("encode", "decode"):
        response = await pipeline.http.post(f"/codec/{operation}", json=body)
        assert response.status_code == 200 and response.json() == body
    bad = await pipeline.http.post("/codec/decode", content=b"not json")
    assert bad.status_code == 400 and "payloads" in bad.json()["detail"]
    assert (await pipeline.http.post("/codec/explode", json=body)).status_code == 404
