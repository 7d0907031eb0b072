#!/usr/bin/env python3
"""Scores the analysis through the running stack on both labelled sets, with evalkit's scorer.

Starts the embedded stack (Temporal dev server, Postgres, workers, API; as `pageperfect demo`
does, in its own data dir), serves each set's pages on loopback, runs one job per page with
the page's Search Console-like rows (evalkit's rows, inline), saves every job's result JSON
as RESULTS/SET/PAGE.json and prints `evalkit.py score` for each set.

    python scripts/evaluate.py [--eval-dir ../shared/eval] [--out eval-results] [--set dev --set real]
                               [--option method=dbscan] [--concurrency 4]

Environment variables choose the providers as for the worker (PAGEPERFECT_EMBEDDING_PROVIDER,
OPENAI_API_KEY, OPENAI_BASE_URL, ...). `--option KEY=VALUE` sets a job analysis option.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pageperfect.models import FINAL_STATUSES  # noqa: E402
from pageperfect.ops.up import running_stack  # noqa: E402
from pageperfect.runtime.stack import free_port  # noqa: E402
from pageperfect.settings import Settings  # noqa: E402

EVAL_DIR = ROOT.parent / "shared" / "eval"
SETS = {"dev": ".", "real": "real"}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def load_evalkit(eval_dir: Path):
    spec = importlib.util.spec_from_file_location("evalkit", eval_dir / "evalkit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


async def run_job(http: httpx.AsyncClient, url: str, rows: list[dict], options: dict) -> dict:
    body = {"url": url, "keywords": rows, "force_update": True, "options": options}
    response = await http.post("/v1/jobs", json=body)
    response.raise_for_status()
    job_id = response.json()["job_id"]
    while True:
        job = (await http.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in FINAL_STATUSES:
            break
        await asyncio.sleep(0.5)
    if job["status"] != "completed":
        raise RuntimeError(f"job for {url} {job['status']}: {job.get('error')}")
    return (await http.get(f"/v1/jobs/{job_id}/result")).json()


async def evaluate(eval_dir: Path, out: Path, sets: list[str], options: dict, concurrency: int) -> None:
    evalkit = load_evalkit(eval_dir)
    with tempfile.TemporaryDirectory(prefix="pageperfect-eval-") as data_dir:
        settings = Settings(_env_file=None).model_copy(
            update={
                "data_dir": Path(data_dir),
                "api_port": free_port(),
                "temporal_port": free_port(),
                "ui_port": free_port(),
                "allowed_hosts": "127.0.0.1",
            }
        )
        async with running_stack(settings) as stack:
            async with httpx.AsyncClient(
                base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {stack.api_key}"}
            ) as http:
                for set_name in sets:
                    folder = eval_dir / SETS[set_name]
                    topics = json.loads((folder / "topics.json").read_text())
                    server, base = serve(folder / "site")
                    target = out / set_name
                    target.mkdir(parents=True, exist_ok=True)
                    gate = asyncio.Semaphore(concurrency)

                    async def one(page: str, spec: dict) -> None:
                        async with gate:
                            result = await run_job(http, f"{base}/{page}.html", evalkit.rows(spec), options)
                        (target / f"{page}.json").write_text(json.dumps(result, indent=1))

                    try:
                        await asyncio.gather(*(one(page, spec) for page, spec in topics.items()))
                    finally:
                        server.shutdown()
                    print(f"== {set_name}: {folder / 'topics.json'}", flush=True)
                    subprocess.run(
                        [
                            sys.executable,
                            str(eval_dir / "evalkit.py"),
                            "score",
                            str(folder / "topics.json"),
                            str(target),
                        ],
                        check=True,
                    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--out", type=Path, default=Path("eval-results"))
    parser.add_argument("--set", dest="sets", action="append", choices=sorted(SETS))
    parser.add_argument("--option", action="append", default=[], type=parse_option)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    asyncio.run(evaluate(args.eval_dir, args.out, args.sets or list(SETS), dict(args.option), args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
