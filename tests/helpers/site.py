"""A web site on loopback that tests add pages to, counting the hits on each path."""

from __future__ import annotations

from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler


class SiteHandler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, headers, body = self.routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@dataclass
class Site:
    base_url: str
    handler: type[SiteHandler]

    def add(
        self,
        path: str,
        body: str | bytes,
        *,
        status: int = 200,
        content_type: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.handler.routes[path] = (status, {"Content-Type": content_type, **(headers or {})}, data)
        return self.base_url + path

    def hits(self, path: str) -> int:
        return self.handler.hits.get(path, 0)
