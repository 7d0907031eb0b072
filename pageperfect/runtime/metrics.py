"""Prometheus metrics: the API's requests (prometheus_client), the Temporal SDK's own series for workers.

The API labels requests by route template (/v1/jobs/{job_id}), never by raw path, so
the number of series stays bounded whatever clients send. The workers' metrics come
from the Temporal SDK runtime, served on their own port (PAGEPERFECT_WORKER_METRICS_PORT).
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

REQUESTS = Counter(
    "pageperfect_api_requests",
    "API requests answered, by method, route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "pageperfect_api_request_duration_seconds",
    "Time to answer an API request, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UNMATCHED = "unmatched"  # 404s for paths no route serves: one series, whatever was asked


class RequestMetrics:
    """ASGI middleware counting every HTTP request and timing it until the response has started."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}  # what an exception that escapes every handler becomes

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            labels = (scope.get("method", ""), route, str(status["code"]))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def sdk_runtime(port: int, host: str = "0.0.0.0") -> Runtime:
    """A Temporal runtime whose clients and workers serve Prometheus metrics on host:port/metrics.

    Durations in seconds and the usual _total and unit suffixes, as Prometheus conventions have them.
    """
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{host}:{port}", counters_total_suffix=True, unit_suffix=True, durations_as_seconds=True
            )
        )
    )
