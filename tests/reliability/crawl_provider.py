"""A small ScraperAPI-style async crawl provider for fault tests, on 127.0.0.1.

    POST /jobs {"apiKey", "url", "apiParams"}  -> {"id", "status": "running"}
    GET  /jobs/{id}                             -> {"status": "running"} or "finished" with the page

It serves pages from `pages` (url -> html) instead of fetching them. Two faults, each
for one URL:
- `hang_submit(url, seconds)`: the next POST for that URL answers only after `seconds`.
- `hold(url)`: jobs for that URL stay "running" until `release(url)`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers.http import serve


class CrawlProviderStub:
    def __init__(self, api_key: str = "scraper-test-key") -> None:
        self.api_key = api_key
        self.pages: dict[str, str] = {}
        self.submits: dict[str, int] = defaultdict(int)
        self.polls: dict[str, int] = defaultdict(int)
        self._jobs: dict[str, str] = {}
        self._hang: dict[str, float] = {}
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    def start(self) -> CrawlProviderStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server, _ = serve(Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hang_submit(self, url: str, seconds: float) -> None:
        with self._lock:
            self._hang[url] = seconds

    def hold(self, url: str) -> None:
        with self._lock:
            self._held.add(url)

    def release(self, url: str) -> None:
        with self._lock:
            self._held.discard(url)

    # ------------------------------------------------------------------ answers

    def _submit(self, body: dict) -> tuple[int, dict]:
        if body.get("apiKey") != self.api_key:
            return 401, {"error": "bad api key"}
        url = str(body.get("url") or "")
        with self._lock:
            self.submits[url] += 1
            delay = self._hang.pop(url, 0.0)
        if delay:
            time.sleep(delay)
        job_id = uuid.uuid4().hex
        with self._lock:
            self._jobs[job_id] = url
        return 200, {"id": job_id, "status": "running", "url": url}

    def _poll(self, job_id: str) -> tuple[int, dict]:
        with self._lock:
            url = self._jobs.get(job_id)
            if url is None:
                return 404, {"error": "no such job"}
            self.polls[url] += 1
            held = url in self._held
        if held:
            return 200, {"id": job_id, "status": "running", "url": url}
        html = self.pages.get(url)
        if html is None:
            response = {"statusCode": 404, "headers": {"content-type": "text/plain"}, "body": "not found"}
        else:
            response = {"statusCode": 200, "headers": {"content-type": "text/html; charset=utf-8"}, "body": html}
        return 200, {"id": job_id, "status": "finished", "url": url, "response": response}


class _Handler(BaseHTTPRequestHandler):
    owner: CrawlProviderStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": "not JSON"})
            return
        if self.path.rstrip("/").endswith("/jobs"):
            self._send(*self.owner._submit(body))
        else:
            self._send(404, {"error": "no route"})

    def do_GET(self) -> None:  # noqa: N802
        parts = self.path.strip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "jobs":
            self._send(*self.owner._poll(parts[-1]))
        else:
            self._send(404, {"error": "no route"})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker that asked was killed
