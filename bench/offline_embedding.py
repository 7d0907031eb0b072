"""Offline embedding: all-MiniLM-L6-v2 on numpy for one job's 1,000 queries and 200 segments.

Cold: a fresh process imports the embedder, loads the model from its extracted cache and
embeds everything; its wall time and the memory the model added (peak RSS minus the RSS
before the model's modules were imported) are the figures. Warm, in this process: the
forward pass's FLOP rate (matrix products counted) against bare numpy matmuls of the same
shapes, where the time goes step by step, and a repeat through the embedding cache.
Texts: queries of 3 to 10 words; passages cut to the token counts of the segments
extracted from the labelled pages (bench.fixtures.SEGMENT_TOKEN_LENGTHS).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import figure, ratio, title, warn

NAME = "offline_embedding"
NEEDS_STACK = False
QUERIES = 1000
SEGMENTS = 200
COLD_TARGET_SECONDS = 3.0
MEMORY_TARGET_MB = 400
# The forward pass beside bare matmuls of its shapes: a floor, so a slow step added to the
# forward pass (or a kernel that falls off BLAS) shows.
FLOP_RATIO_TARGET = 0.6


def passages(tokenizer, lengths: list[int] | tuple[int, ...], seed: int = 0) -> list[str]:
    """Segment-like texts ("heading: paragraph") of exactly these token counts ([CLS] and [SEP] included)."""
    from bench.fixtures import COVERED, FILLER

    rng = random.Random(seed)
    texts = []
    for i, length in enumerate(lengths):
        heading, vocabulary = COVERED[i % len(COVERED)]
        words = vocabulary.split() * 3 + FILLER
        text = f"{heading}: " + " ".join(rng.choice(words) for _ in range(length + 10))
        encoding = tokenizer.encode(text)  # truncated at 256 by the model's tokenizer settings
        keep = max(0, min(length, len(encoding.ids)) - 2)  # word pieces between [CLS] and [SEP]
        cut = encoding.offsets[keep][1] if keep else 0  # offsets[0] is [CLS]: piece k ends at offsets[k]
        texts.append(text[:cut].strip())
    return texts


def workload(quick: bool) -> tuple[list[str], list[str]]:
    from bench.fixtures import SEGMENT_TOKEN_LENGTHS, search_queries
    from pageperfect.analysis.minilm import load_model

    queries = search_queries(QUERIES // 4 if quick else QUERIES)
    lengths = SEGMENT_TOKEN_LENGTHS[::4] if quick else SEGMENT_TOKEN_LENGTHS
    return queries, passages(load_model().tokenizer, lengths)


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(texts_file: Path) -> dict:
    """A fresh process: import, load and embed once, and say how long and how much memory it took."""
    import numpy as np

    texts = json.loads(texts_file.read_text())
    rss_before = _rss_bytes("VmRSS")
    started = time.perf_counter()
    from pageperfect.analysis.minilm import MiniLMEmbedder

    imported = time.perf_counter()
    embedder = MiniLMEmbedder()
    embedder.load()
    loaded = time.perf_counter()
    cpu = time.process_time()
    vectors = embedder.embed_sync(texts)
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    assert vectors.shape == (len(texts), embedder.dim) and np.all(np.isfinite(vectors))
    return {
        "import": imported - started,
        "load": loaded - imported,
        "embed": done - loaded,
        "embed_cpu": cpu,
        "total": done - started,
        "rss_before": rss_before,
        "peak_rss": _rss_bytes("VmHWM"),
        "requests": embedder.requests,
        "threads": embedder.threads,
        "blas": blas_kernels(),
    }


def blas_kernels() -> str:
    """The BLAS library and the kernels it picked (OPENBLAS_CORETYPE, where set, decides for OpenBLAS)."""
    from threadpoolctl import threadpool_info

    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    if not blas:
        return "unknown"
    return f"{blas[0].get('internal_api')} {blas[0].get('version')}, {blas[0].get('architecture')} kernels"


def run_child(texts: list[str], workdir: Path, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> dict:
    texts_file = workdir / "texts.json"
    texts_file.write_text(json.dumps(texts))
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.offline_embedding", "--child", str(texts_file)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"offline embedding child failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - started
    return result


def bare_matmul_seconds(model, chunk_tokens: list[int]) -> tuple[float, int]:
    """Bare numpy matmuls of the forward pass's dense shapes, for chunks of these token counts: seconds, FLOPs."""
    import numpy as np

    rng = np.random.default_rng(0)
    layer = model.layers[0]
    weights = [layer.qkv_w, layer.out_w, layer.ff_in_w, layer.ff_out_w]
    seconds, flops = 0.0, 0
    for tokens in chunk_tokens:
        inputs = [rng.standard_normal((tokens, w.shape[0]), dtype=np.float32) for w in weights]
        np.matmul(inputs[0], weights[0])  # first touch of the inputs out of the timing
        started = time.perf_counter()
        for _ in model.layers:
            for x, w in zip(inputs, weights):
                np.matmul(x, w)
        seconds += time.perf_counter() - started
        flops += len(model.layers) * sum(2 * tokens * w.shape[0] * w.shape[1] for w in weights)
    return seconds, flops


async def run(quick: bool, stack: object = None) -> None:
    import asyncio

    from pageperfect.analysis.embeddings import MemoryEmbeddingCache, embed_with_cache
    from pageperfect.analysis.minilm import CHUNK_TOKENS, MiniLMEmbedder, load_model, model_dir

    model_dir()  # extracted before the cold process starts: a worker's start after the first
    queries, segments = workload(quick)
    texts = segments + queries
    model = load_model()
    lengths = [len(ids) for ids in model.tokenize(texts)]
    flops = model.flops(lengths)
    title(
        f"offline embedding: all-MiniLM-L6-v2 on numpy, {len(queries):,} queries and {len(segments)} segments, "
        f"{os.cpu_count()} cores"
    )
    figure(
        "tokens",
        f"{sum(lengths[len(segments) :]):,} in queries (mean {sum(lengths[len(segments) :]) / len(queries):.1f}), "
        f"{sum(lengths[: len(segments)]):,} in segments "
        f"(mean {sum(lengths[: len(segments)]) / len(segments):.1f}); "
        f"{flops / 1e9:.0f} GFLOP in matrix products",
    )

    pinned = os.environ.get("OPENBLAS_CORETYPE")
    figure("BLAS", blas_kernels() + (f" (OPENBLAS_CORETYPE={pinned} in the environment)" if pinned else ""))
    with tempfile.TemporaryDirectory(prefix="bench-minilm-") as tmp:
        cold = run_child(texts, Path(tmp))
        first = own = None
        if not quick:
            first = run_child(texts, Path(tmp), env={"PAGEPERFECT_MODEL_CACHE": str(Path(tmp) / "fresh-cache")})
            if pinned:
                own = run_child(texts, Path(tmp), unset=("OPENBLAS_CORETYPE",))
    added_mb = (cold["peak_rss"] - cold["rss_before"]) / 2**20
    figure(
        "cold process",
        f"import {cold['import']:.2f} s + load {cold['load']:.2f} s + embed {cold['embed']:.2f} s "
        f"= {cold['total']:.2f} s ({cold['process']:.2f} s with the interpreter's start); "
        f"{cold['requests']} chunks on {cold['threads']} threads, {cold['embed_cpu']:.2f} CPU s",
    )
    figure(
        "cold process memory",
        f"RSS {cold['rss_before'] / 2**20:.0f} MB before the model, peak "
        f"{cold['peak_rss'] / 2**20:.0f} MB: {added_mb:.0f} MB added",
    )
    if first is not None:
        figure(
            "first start on a machine (model.zip extracted)",
            f"load {first['load']:.2f} s, total {first['total']:.2f} s",
        )
    if own is not None:
        figure(
            "cold process, OPENBLAS_CORETYPE unset (informational)",
            f"{own['blas']}: load {own['load']:.2f} s + embed {own['embed']:.2f} s = {own['total']:.2f} s",
        )

    # Warm: the forward pass against bare matmuls of its shapes, the best of a few runs each.
    embedder = MiniLMEmbedder()
    repeats = 1 if quick else 3
    warm = min(_timed(lambda: model.embed(texts, CHUNK_TOKENS, embedder.threads)) for _ in range(repeats))
    chunk_sizes = [
        sum(lengths[i] for i in chunk) for chunk in model.chunks(model.tokenize(texts), CHUNK_TOKENS, embedder.threads)
    ]
    bare_seconds, bare_flops = min(bare_matmul_seconds(model, chunk_sizes) for _ in range(repeats))
    model_rate, bare_rate = flops / warm / 1e9, bare_flops / bare_seconds / 1e9
    figure("warm forward pass", f"{warm:.2f} s, {model_rate:.0f} GFLOP/s ({embedder.threads} threads of 1 BLAS thread)")
    figure("bare matmuls of its dense shapes", f"{bare_seconds:.2f} s, {bare_rate:.0f} GFLOP/s (BLAS on every core)")
    sequential = _timed(lambda: model.embed(texts, CHUNK_TOKENS, 1))
    figure(
        "warm forward pass, one thread (BLAS on every core)",
        f"{sequential:.2f} s, {flops / sequential / 1e9:.0f} GFLOP/s",
    )

    model.profile = {}
    try:
        model.embed(texts, CHUNK_TOKENS, 1)
        steps = dict(model.profile)
    finally:
        model.profile = None
    total = sum(steps.values())
    figure(
        "where one thread's time goes",
        ", ".join(f"{name} {seconds / total:.0%}" for name, seconds in sorted(steps.items(), key=lambda kv: -kv[1])),
    )

    cache = MemoryEmbeddingCache()
    calls = []
    for _ in range(2):
        before = embedder.requests
        await embed_with_cache(embedder, segments, cache)
        await embed_with_cache(embedder, queries, cache)
        calls.append(embedder.requests - before)
    figure("model calls (chunks) through the cache", f"first job {calls[0]}, same texts again {calls[1]}")
    await asyncio.sleep(0)

    ratio(
        "offline_embedding.cold_seconds",
        cold["total"],
        f"<= {COLD_TARGET_SECONDS:g} s, fresh process, load included",
        cold["total"] <= COLD_TARGET_SECONDS,
    )
    ratio(
        "offline_embedding.model_memory_mb",
        added_mb,
        f"<= {MEMORY_TARGET_MB} MB added by the model",
        added_mb <= MEMORY_TARGET_MB,
    )
    ratio(
        "offline_embedding.flop_rate_vs_matmul",
        model_rate / bare_rate,
        f">= {FLOP_RATIO_TARGET:g} of bare numpy matmuls of the same shapes",
        model_rate / bare_rate >= FLOP_RATIO_TARGET,
    )
    ratio("offline_embedding.repeat_model_calls", calls[1], "0 with the same cache", calls[1] == 0)
    if quick:
        warn(
            f"--quick embeds {len(queries)} queries and {len(segments)} segments; the target is for "
            f"{QUERIES:,} and {SEGMENTS} (a full run)"
        )


def _timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path, required=True, help="a JSON list of texts to embed in this process")
    print(json.dumps(child(parser.parse_args().child)))
