"""Local HTTP servers for the test stubs: one served in a daemon thread, JSON answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(
    handler: type[BaseHTTPRequestHandler], name: str | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A server for `handler` on a free port of 127.0.0.1, answering from a daemon thread until shut down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return server, thread


def send_json(
    handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str] | None = None
) -> None:
    """Answer `payload` as JSON with its length, and any extra headers."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)
