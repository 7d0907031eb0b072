"""Intake: POST /v1/jobs under load from a second process, vs a bare FastAPI endpoint returning the same JSON.

Both apps run under uvicorn in this process, one after the other; the load comes
from `python -m bench.intake --load ...` (aiohttp) in a child process. Two loads:
closed loop (CONCURRENCY clients sending back to back: the most it takes), and
open loop at 100 requests/s (latency measured from each request's scheduled
send time, so a stall counts for every request it delays). No workers poll the
queue prefix used here: the jobs are started and stay queued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench.common import cores_used, figure, percentile, ratio, title
from bench.fixtures import keyword_rows

NAME = "intake"
NEEDS_STACK = True
CONCURRENCY = 16
RATE = 100.0
KEYWORDS_PER_JOB = 20
THROUGHPUT_TARGET = 0.5
P99_TARGET_MS = 100.0
GRACE_SECONDS = 10.0


def bare_app():
    """The floor: FastAPI reads the body and answers the intake's JSON, touching nothing else."""
    app = FastAPI()

    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: Request) -> JSONResponse:
        body = await request.json()
        job_id = str(uuid.uuid4())
        return JSONResponse(
            {
                "job_id": job_id,
                "workflow_id": "pageperfect-page-1",
                "run_id": str(uuid.uuid4()),
                "page_id": 1,
                "url": body.get("url"),
                "status": "queued",
                "existing": False,
                "status_url": str(request.url_for("create_job")) + "/" + job_id,
            },
            status_code=202,
        )

    return app


async def _serve(stack, app, load_args: list[str], timeout: float) -> dict:
    import uvicorn

    from pageperfect.runtime.stack import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        before = stack.cpu_seconds()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.intake",
            "--load",
            f"http://127.0.0.1:{port}/v1/jobs",
            *load_args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        if process.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{stderr.decode()[-3000:]}")
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        after = stack.cpu_seconds()
        # The child's own count, over the run only (its start-up is not load on the server).
        before["load generator"], after["load generator"] = 0.0, result["cpu"]
        result["cores"] = cores_used(before, after, result["elapsed"])
        return result
    finally:
        server.should_exit = True
        await task


async def run(quick: bool, stack) -> None:
    from api.app import create_app

    seconds = 3 if quick else 20
    closed_requests = 300 if quick else 3000
    title(
        f"intake: POST /v1/jobs with {KEYWORDS_PER_JOB} keywords; closed loop x{CONCURRENCY}, "
        f"then open loop at {RATE:.0f}/s; {seconds} s each at most"
    )
    prefix = f"intake{uuid.uuid4().hex[:6]}"
    settings = stack.settings()
    apps = {
        "bare": bare_app,
        "intake": lambda: create_app(settings, pool=stack.pool, client=stack.client, queue_prefix=prefix),
    }
    results: dict[str, dict] = {}
    for name, make in apps.items():
        url_base = stack.site.url("intake", f"{prefix}-{name}")
        common = ["--url-base", url_base, "--seconds", str(seconds)]
        closed = await _serve(
            stack,
            make(),
            [*common, "--concurrency", str(CONCURRENCY), "--requests", str(closed_requests), "--tag", "closed"],
            timeout=seconds + 60,
        )
        opened = await _serve(stack, make(), [*common, "--rate", str(RATE), "--tag", "open"], timeout=seconds + 60)
        if closed["done"] == 0:  # nothing accepted: the benchmark is broken, not slow
            raise RuntimeError(f"{name}: every POST /v1/jobs failed: {closed['statuses']}")
        results[name] = {"closed": closed, "open": opened}
        loads = [("closed", closed), (f"{RATE:.0f}/s", opened)]
        within = round(closed["done"] / closed["elapsed"] / 2)
        if within < RATE:  # also at half of what it took flat out, where it is not overloaded
            half = await _serve(stack, make(), [*common, "--rate", str(within), "--tag", "half"], timeout=seconds + 60)
            loads.append((f"{within}/s", half))
        for label, r in loads:
            figure(
                f"{name:<6} {label:<6}",
                f"{r['done']:5d} ok, {r['errors']:3d} errors in {r['elapsed']:5.1f} s = "
                f"{r['done'] / r['elapsed']:7.1f} req/s; latency p50 {r['p50_ms']:6.1f} ms, "
                f"p99 {r['p99_ms']:6.1f} ms, max {r['max_ms']:6.1f} ms",
            )
            figure(f"{name:<6} {label:<6} cores busy", r["cores"])
            if r["statuses"]:
                figure(f"{name:<6} {label:<6} statuses", r["statuses"])
    rate = {n: r["closed"]["done"] / r["closed"]["elapsed"] for n, r in results.items()}
    share = rate["intake"] / rate["bare"]
    ratio("intake.throughput_vs_bare", share, f">= {THROUGHPUT_TARGET}", share >= THROUGHPUT_TARGET)
    opened = results["intake"]["open"]
    p99 = opened["p99_ms"]
    clean = opened["errors"] == 0
    ratio(
        f"intake.p99_ms_at_{RATE:.0f}_per_s", p99, f"< {P99_TARGET_MS:.0f} ms, no errors", p99 < P99_TARGET_MS and clean
    )


# ----------------------------------------------------------------------------- the load generator (child process)


def _body(url_base: str, tag: str, i: int, keywords: list[dict]) -> dict:
    return {"url": f"{url_base}-{tag}-{i}.html", "keywords": keywords}


async def load(
    target: str,
    *,
    url_base: str,
    tag: str,
    seconds: float,
    concurrency: int | None,
    requests: int | None,
    rate: float | None,
) -> dict:
    # aiohttp rather than httpx here: with hundreds of requests waiting on a slow server, httpx's
    # connection pool spent ~8 ms of CPU per request (O(n) work per request in its pool), so an
    # open-loop generator collapsed before the server did (docs/BENCHMARKS.md, intake).
    import aiohttp

    keywords = keyword_rows(KEYWORDS_PER_JOB)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    from bench.stack import BENCH_API_KEY

    headers = {"Authorization": f"Bearer {BENCH_API_KEY}"}  # sent to the bare app too: same request bytes
    connector = aiohttp.TCPConnector(limit=0)  # one connection per request in flight, kept alive
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
    ) as client:

        async def send(i: int, scheduled: float) -> None:
            nonlocal errors
            status = None
            try:
                async with client.post(target, json=_body(url_base, tag, i, keywords)) as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as err:
                statuses[type(err).__name__] = statuses.get(type(err).__name__, 0) + 1
            if status == 202:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors += 1
                if status is not None:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1

        await send(-1, time.perf_counter())  # connection and first-request costs out of the way
        latencies.clear()
        errors = 0
        statuses.clear()
        cpu_started = time.process_time()
        started = time.perf_counter()
        deadline = started + seconds
        unfinished = 0
        if rate:
            tasks = []
            i = 0
            while time.perf_counter() < deadline:
                scheduled = started + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(i, scheduled)))
                i += 1
            # A server slower than the rate builds a queue that would take long to drain: what is
            # still waiting GRACE_SECONDS after the last send counts as unfinished.
            _, pending = await asyncio.wait(tasks, timeout=GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            unfinished = len(pending)
            errors += unfinished
        else:
            counter = iter(range(requests or 10**9))

            async def client_loop() -> None:
                for i in counter:
                    if time.perf_counter() > deadline:
                        return
                    await send(i, time.perf_counter())

            await asyncio.gather(*(client_loop() for _ in range(concurrency or 1)))
        elapsed = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    ms = [x * 1000 for x in latencies]
    if unfinished:
        statuses["unfinished"] = unfinished
    return {
        "done": len(latencies),
        "errors": errors,
        "elapsed": elapsed,
        "statuses": statuses,
        "cpu": cpu_seconds,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms, default=float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="load generator for the intake benchmark")
    parser.add_argument("--load", required=True, help="the POST /v1/jobs URL")
    parser.add_argument("--url-base", required=True)
    parser.add_argument("--tag", default="x")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    result = asyncio.run(
        load(
            args.load,
            url_base=args.url_base,
            tag=args.tag,
            seconds=args.seconds,
            concurrency=args.concurrency,
            requests=args.requests,
            rate=args.rate,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
