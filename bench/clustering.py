"""Clustering: the radius-graph DBSCAN against plain DBSCAN(metric="cosine") and the bare X·Xᵀ product.

Each case runs in its own process, so its peak RSS is its own (VmHWM).
Data: synthetic 1,536-dim query embeddings, float32, unit length: 300 topic
centres sharing a common direction (real query embeddings of one page all lean
towards its subject), per-point noise of varying size so that within-topic
distances straddle eps, and 10% outliers that belong to no topic.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import figure, ratio, title, warn

NAME = "clustering"
NEEDS_STACK = False

DIMS = 1536
CENTRES = 300
OUTLIER_SHARE = 0.10
EPS = 0.3  # the OpenAI provider's default
MIN_SAMPLES = 2
CASES = ("radius", "cluster_keywords", "approx", "dbscan", "matmul")
TIME_TARGET = 1.2
MEMORY_TARGET_MB = 1024
APPROX_SPEEDUP_TARGET = 3.0
APPROX_ARI_TARGET = 0.95


def synthetic_queries(n: int, seed: int = 0, noise_range: tuple[float, float] = (0.3, 1.2)) -> np.ndarray:
    """n unit vectors; the noise range sets how far points sit from their topic (the default straddles eps=0.3)."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(DIMS, dtype=np.float32)
    centres = rng.standard_normal((CENTRES, DIMS), dtype=np.float32)
    topic = rng.integers(0, CENTRES, n)
    noise = rng.uniform(*noise_range, n).astype(np.float32)
    matrix = 0.8 * common + centres[topic]
    outliers = rng.random(n) < OUTLIER_SHARE
    matrix[outliers] = 0.8 * common + rng.standard_normal((int(outliers.sum()), DIMS), dtype=np.float32)
    matrix += noise[:, None] * rng.standard_normal((n, DIMS), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix.astype(np.float32)


def _peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent at fork."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _case_function(case: str, matrix: np.ndarray, threads: int):
    """A callable running one case on `matrix` and returning labels (None for the product)."""
    from sklearn.cluster import DBSCAN
    from threadpoolctl import threadpool_limits

    from pageperfect.analysis.clustering import cluster_keywords, dbscan_labels
    from pageperfect.models import KeywordRow

    if case == "radius":
        return lambda m: dbscan_labels(m, eps=EPS, min_samples=MIN_SAMPLES, threads=threads)
    if case == "approx":
        return lambda m: dbscan_labels(m, eps=EPS, min_samples=MIN_SAMPLES, approximate=True, threads=threads)
    if case == "cluster_keywords":
        rows = [
            KeywordRow(query=f"query {i}", impressions=float(i % 97), position=1 + i % 40) for i in range(len(matrix))
        ]

        def run(m: np.ndarray) -> np.ndarray:
            clusters = cluster_keywords(rows[: len(m)], m, eps=EPS, min_samples=MIN_SAMPLES, threads=threads)
            labels = np.full(len(m), -1)
            for c in clusters:
                if c.size > 1:  # with min_samples >= 2 a cluster of one is a DBSCAN noise point
                    labels[c.member_indices] = c.cluster_id
            return labels

        return run

    def limited(func):
        def run(m: np.ndarray):
            with threadpool_limits(limits=threads, user_api="blas"):
                return func(m)

        return run

    if case == "dbscan":
        return limited(lambda m: DBSCAN(eps=EPS, min_samples=MIN_SAMPLES, metric="cosine").fit(m).labels_)
    if case == "matmul":

        def product(m: np.ndarray) -> None:
            m @ m.T  # the n-by-n float32 similarities, dropped at once

        return limited(product)
    raise ValueError(f"unknown case {case}")


def child(case: str, data: Path, threads: int, repeats: int, labels_out: Path | None) -> dict:
    """Runs in the case's own process: load, warm up, then time the call and read the peak RSS."""
    matrix = np.load(data)
    func = _case_function(case, matrix, threads)
    func(matrix[:64].copy())  # imports and first BLAS call out of the way
    gc.collect()
    before = _peak_rss_bytes()
    times = []
    labels = None
    for _ in range(repeats):
        started = time.perf_counter()
        labels = func(matrix)
        times.append(time.perf_counter() - started)
    peak = _peak_rss_bytes()
    if labels_out is not None and labels is not None:
        np.save(labels_out, np.asarray(labels))
    return {"case": case, "seconds": min(times), "peak_rss": peak, "rss_before": before}


def run_case(case: str, data: Path, threads: int, repeats: int, workdir: Path, timeout: float) -> dict:
    labels_out = workdir / f"{data.stem}-{case}-{threads}.npy"
    args = [
        sys.executable,
        "-m",
        "bench.clustering",
        "--case",
        case,
        "--data",
        str(data),
        "--threads",
        str(threads),
        "--repeats",
        str(repeats),
        "--labels-out",
        str(labels_out),
    ]
    # One BLAS thread pool per process, sized by the case (threadpool_limits), not by the environment.
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, cwd=Path(__file__).resolve().parents[1]
    )
    if done.returncode != 0:
        raise RuntimeError(f"clustering case {case} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["labels"] = np.load(labels_out) if labels_out.exists() else None
    return result


async def run(quick: bool, stack: object = None) -> None:
    from sklearn.metrics import adjusted_rand_score

    from pageperfect.analysis.clustering import default_blas_threads

    sizes = [2000] if quick else [2000, 20000]
    threads = default_blas_threads()
    all_cores = os.cpu_count() or 1
    title(
        f"clustering: {DIMS} dims, eps={EPS}, min_samples={MIN_SAMPLES}, {threads} BLAS thread(s) "
        f"(the default: cores - 1), {all_cores} cores"
    )
    with tempfile.TemporaryDirectory(prefix="bench-clustering-") as tmp:
        workdir = Path(tmp)
        for n in sizes:
            data = workdir / f"queries-{n}.npy"
            np.save(data, synthetic_queries(n))
            repeats = 3 if n <= 5000 else 1
            timeout = 120 if n <= 5000 else 900
            results = {case: run_case(case, data, threads, repeats, workdir, timeout) for case in CASES}
            if all_cores > threads and not quick:
                for case in ("radius", "matmul"):
                    results[f"{case}_all"] = run_case(case, data, all_cores, repeats, workdir, timeout)
            exact = results["dbscan"]["labels"]
            print(
                f"  -- n = {n:,}: {len(set(exact)) - (1 if -1 in exact else 0)} clusters, "
                f"{np.mean(exact == -1):.1%} noise (exact DBSCAN)"
            )
            for case, r in results.items():
                figure(
                    f"{case:<17} n={n:<6}",
                    f"{r['seconds'] * 1000:9.1f} ms, peak RSS {r['peak_rss'] / 2**20:7.0f} MB "
                    f"({(r['peak_rss'] - r['rss_before']) / 2**20:6.0f} MB above loaded data)",
                )
            radius, approx, matmul = results["radius"], results["approx"], results["matmul"]
            same = float(np.mean(radius["labels"] == exact))
            keywords_same = float(adjusted_rand_score(exact, results["cluster_keywords"]["labels"]))
            figure("cluster_keywords partition vs exact (ARI)", f"{keywords_same:.4f}")
            ratio(
                f"clustering.labels_identical_{n}",
                same,
                "1 (identical to DBSCAN(metric='cosine'))",
                bool(np.array_equal(radius["labels"], exact)),
            )
            time_ratio = radius["seconds"] / matmul["seconds"]
            ratio(
                f"clustering.time_vs_matmul_{n}",
                time_ratio,
                f"<= {TIME_TARGET} (both {threads} thread(s))",
                time_ratio <= TIME_TARGET,
            )
            if "radius_all" in results:
                all_ratio = results["radius_all"]["seconds"] / results["matmul_all"]["seconds"]
                ratio(
                    f"clustering.time_vs_matmul_all_cores_{n}",
                    all_ratio,
                    f"<= {TIME_TARGET} (both {all_cores} threads)",
                    all_ratio <= TIME_TARGET,
                )
            peak_mb = max(radius["peak_rss"], results["cluster_keywords"]["peak_rss"]) / 2**20
            ratio(
                f"clustering.peak_rss_mb_{n}",
                peak_mb,
                f"< {MEMORY_TARGET_MB} MB, whole process",
                peak_mb < MEMORY_TARGET_MB,
            )
            speedup = matmul["seconds"] / approx["seconds"]
            ari = float(adjusted_rand_score(exact, approx["labels"]))
            ratio(f"clustering.approx_ari_{n}", ari, f">= {APPROX_ARI_TARGET}", ari >= APPROX_ARI_TARGET)
            ratio(
                f"clustering.approx_speedup_vs_matmul_{n}",
                speedup,
                f">= {APPROX_SPEEDUP_TARGET}",
                speedup >= APPROX_SPEEDUP_TARGET,
            )
        if not quick:
            await _separated_topics(workdir, sizes[-1], threads)
    if quick:
        warn("--quick runs 2,000 queries only; the 20,000 figures come from a full run")


async def _separated_topics(workdir: Path, n: int, threads: int) -> None:
    """The approximate mode again on topics well inside eps (within-topic distances 0.05-0.18)."""
    from sklearn.metrics import adjusted_rand_score

    data = workdir / f"separated-{n}.npy"
    np.save(data, synthetic_queries(n, seed=1, noise_range=(0.3, 0.6)))
    exact = run_case("radius", data, threads, 1, workdir, 900)
    approx = run_case("approx", data, threads, 1, workdir, 900)
    ari = float(adjusted_rand_score(exact["labels"], approx["labels"]))
    print(
        f"  -- n = {n:,}, separated topics: {len(set(exact['labels'])) - 1} clusters, "
        f"{np.mean(exact['labels'] == -1):.1%} noise"
    )
    figure(f"radius / approx n={n}", f"{exact['seconds'] * 1000:9.1f} ms / {approx['seconds'] * 1000:9.1f} ms")
    ratio(
        f"clustering.approx_ari_separated_{n}",
        ari,
        f">= {APPROX_ARI_TARGET} (separated topics)",
        ari >= APPROX_ARI_TARGET,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one clustering case, in its own process")
    parser.add_argument("--case", choices=CASES, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--labels-out", type=Path)
    args = parser.parse_args()
    print(json.dumps(child(args.case, args.data, args.threads, args.repeats, args.labels_out)))


if __name__ == "__main__":
    main()
