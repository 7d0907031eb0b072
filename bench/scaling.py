"""Scaling: how clustering time, pipeline throughput and one job's time grow from small to large.

Three series, measured in one run:

1. clustering time vs number of queries: `dbscan_labels` exact, `approximate=True`
   and the bare float32 X·Xᵀ product, on the synthetic 1,536-dim queries of
   bench/clustering.py (its generator, eps and min_samples), one BLAS thread for
   all, best of a few repeats for the small sizes. In this process (no peak RSS
   here: bench/clustering.py measures memory, one process per case).
2. pipeline throughput vs jobs at once: jobs/s through Temporal (intake, workers,
   the orchestration page of ~50 segments and 300 queries), each job its own page URL.
3. one pipeline job's time vs its number of queries, same page.

Each series is printed as a table; the growth from the smallest to the largest
size is printed as RATIO lines whose targets are the bounds the algorithm sets
(informational, not project targets). Full runs draw docs/bench-scaling.png;
--quick draws the same plot to a temporary file.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.clustering import DIMS, EPS, MIN_SAMPLES, synthetic_queries
from bench.common import figure, ratio, title, warn
from bench.fixtures import article_html, keyword_rows
from bench.jobs import many, pipeline_job
from bench.orchestration import QUERIES, SECTIONS

NAME = "scaling"
NEEDS_STACK = True

PLOT = Path(__file__).resolve().parents[1] / "docs" / "bench-scaling.png"
CLUSTER_CASES = ("exact", "approx", "matmul")
CASE_LABELS = {
    "exact": "dbscan_labels (exact)",
    "approx": "dbscan_labels(approximate=True)",
    "matmul": "X @ X.T (float32)",
}


def _sizes(quick: bool) -> tuple[list[int], list[int], list[int]]:
    """(query counts for clustering, jobs at once, queries per job)."""
    if quick:
        return [500, 1000, 2000], [1, 5], [100, 300]
    return [500, 1000, 2000, 5000, 10000], [1, 5, 20, 50], [100, 300, 1000]


def _cluster_call(case: str):
    from threadpoolctl import threadpool_limits

    from pageperfect.analysis.clustering import dbscan_labels

    if case == "exact":
        return lambda m: dbscan_labels(m, eps=EPS, min_samples=MIN_SAMPLES, threads=1)
    if case == "approx":
        return lambda m: dbscan_labels(m, eps=EPS, min_samples=MIN_SAMPLES, approximate=True, threads=1)

    def product(m: np.ndarray) -> None:
        with threadpool_limits(limits=1, user_api="blas"):
            m @ m.T  # the n-by-n similarities, dropped at once

    return product


def clustering_times(sizes: list[int]) -> dict[str, dict[int, float]]:
    """Best-of-repeats seconds per case and size, one BLAS thread each (runs in a worker thread)."""
    times: dict[str, dict[int, float]] = {case: {} for case in CLUSTER_CASES}
    calls = {case: _cluster_call(case) for case in CLUSTER_CASES}
    warm = synthetic_queries(64)
    for call in calls.values():
        call(warm)  # imports and the first BLAS call out of the way
    for n in sizes:
        matrix = synthetic_queries(n)
        repeats = 5 if n <= 1000 else 3 if n <= 2000 else 1
        for case, call in calls.items():
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                call(matrix)
                best = min(best, time.perf_counter() - started)
            times[case][n] = best
        del matrix
    return times


async def throughput(stack, prefix, settings, url, keywords, counts: list[int], quick: bool) -> dict[int, dict]:
    """Jobs/s with c jobs at once, for each c: the median wall time of a few rounds."""
    results = {}
    for c in counts:
        rounds = 1 if quick else (3 if c <= 20 else 2)
        walls = []
        for r in range(rounds):
            walls.append(
                await many(c, lambda i: pipeline_job(stack, prefix, settings, url(f"c{c}-r{r}-{i}"), keywords))
            )
        wall = statistics.median(walls)
        results[c] = {"rounds": rounds, "wall": wall, "jobs_per_s": c / wall}
    return results


async def job_times(stack, prefix, settings, url, counts: list[int], quick: bool) -> dict[int, dict]:
    """One job at a time for each query count: one untimed warm-up (fills the embedding cache), then the median."""
    results = {}
    for q in counts:
        keywords = keyword_rows(q)
        await pipeline_job(stack, prefix, settings, url(f"q{q}-warm"), keywords)
        repeats = 1 if quick else 3
        runs = [await pipeline_job(stack, prefix, settings, url(f"q{q}-{i}"), keywords) for i in range(repeats)]
        clustering_ms = statistics.median(r.result["stages"]["keyword_clustering"].get("duration_ms", 0) for r in runs)
        clusters = runs[0].result["stages"]["keyword_clustering"]["counts"].get("clusters", float("nan"))
        results[q] = {
            "repeats": repeats,
            "seconds": statistics.median(r.seconds for r in runs),
            "clustering_ms": clustering_ms,
            "clusters": clusters,
        }
    return results


def draw(
    path: Path,
    cluster: dict[str, dict[int, float]],
    jobs_at_once: dict[int, dict],
    per_query: dict[int, dict],
    note: str,
) -> bool:
    """The three panels; False (and one line said) when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("  plot skipped: matplotlib is not installed (pip install matplotlib, or .[test])", flush=True)
        return False
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.6))
    for case in CLUSTER_CASES:
        sizes = sorted(cluster[case])
        a.plot(sizes, [cluster[case][n] * 1000 for n in sizes], marker="o", label=CASE_LABELS[case])
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("queries (n)")
    a.set_ylabel("time, ms (best of repeats, 1 BLAS thread)")
    a.set_title(f"Clustering, {DIMS} dims, eps {EPS}")
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)

    counts = sorted(jobs_at_once)
    b.plot(counts, [jobs_at_once[k]["jobs_per_s"] for k in counts], marker="o", label="pipeline (Temporal)")
    b.set_xscale("log")
    b.set_xticks(counts, [str(k) for k in counts])
    b.set_ylim(bottom=0)
    b.set_xlabel("jobs at once")
    b.set_ylabel("jobs/s")
    b.set_title(f"Pipeline throughput, {QUERIES} queries per job")
    b.grid(True, alpha=0.3)
    b.legend(fontsize=8)

    qs = sorted(per_query)
    c.plot(qs, [per_query[q]["seconds"] for q in qs], marker="o", label="whole job (submit to result)")
    c.plot(qs, [per_query[q]["clustering_ms"] / 1000 for q in qs], marker="s", label="keyword_clustering stage")
    c.set_ylim(bottom=0)
    c.set_xlabel("queries in the job")
    c.set_ylabel("seconds (median, one job at a time)")
    c.set_title("One pipeline job vs its queries")
    c.grid(True, alpha=0.3)
    c.legend(fontsize=8)

    fig.suptitle(f"bench/scaling.py: {note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _growth(name: str, small: float, large: float, size_ratio: float, power: int, what: str) -> None:
    """A growth as a RATIO line; the target is the bound the algorithm sets, informational only."""
    bound = size_ratio**power
    growth = large / small
    ratio(name, growth, f"<= {bound:g} ({what}; informational, not a project target)", growth <= bound)


async def run(quick: bool, stack) -> None:
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cluster_sizes, concurrency, query_counts = _sizes(quick)
    title(
        f"scaling: clustering at {', '.join(f'{n:,}' for n in cluster_sizes)} queries; pipeline jobs/s at "
        f"{', '.join(map(str, concurrency))} at once; one job at {', '.join(map(str, query_counts))} queries"
    )

    cluster = await asyncio.to_thread(clustering_times, cluster_sizes)
    print(f"  -- clustering, {DIMS} dims, eps={EPS}, min_samples={MIN_SAMPLES}, 1 BLAS thread, best of repeats")
    print(f"  {'n':>7} | {'exact ms':>10} | {'approx ms':>10} | {'X@X.T ms':>10}")
    for n in cluster_sizes:
        print(
            f"  {n:>7,} | {cluster['exact'][n] * 1000:10.1f} | {cluster['approx'][n] * 1000:10.1f} | "
            f"{cluster['matmul'][n] * 1000:10.1f}",
            flush=True,
        )

    stack.site.add("scaling", article_html(sections=SECTIONS))
    run_id = uuid.uuid4().hex[:6]

    def url(name: str) -> str:
        return stack.site.url("scaling", f"{run_id}-{name}")

    keywords = keyword_rows(QUERIES)
    async with stack.workers() as (prefix, settings, group):
        await pipeline_job(stack, prefix, settings, url("warm"), keywords)  # workers polling, cache filled
        at_once = await throughput(stack, prefix, settings, url, keywords, concurrency, quick)
        per_query = await job_times(stack, prefix, settings, url, query_counts, quick)
        await group.writer.flush()
    limit = settings.max_concurrent_per_queue

    print(f"  -- pipeline throughput, {QUERIES} queries per job, at most {limit} activities at once per queue")
    print(f"  {'at once':>7} | {'rounds':>6} | {'wall s':>8} | {'jobs/s':>7}")
    for c in concurrency:
        r = at_once[c]
        print(f"  {c:>7} | {r['rounds']:>6} | {r['wall']:8.2f} | {r['jobs_per_s']:7.2f}", flush=True)
    print("  -- one pipeline job vs its queries, one at a time, after a warm-up job of the same size")
    print(f"  {'queries':>7} | {'runs':>4} | {'job ms':>8} | {'clustering stage ms':>19} | {'clusters':>8}")
    for q in query_counts:
        r = per_query[q]
        print(
            f"  {q:>7} | {r['repeats']:>4} | {r['seconds'] * 1000:8.0f} | {r['clustering_ms']:19.0f} | "
            f"{r['clusters']:8.0f}",
            flush=True,
        )

    small, large = cluster_sizes[0], cluster_sizes[-1]
    for case in CLUSTER_CASES:
        figure(
            f"growth {case}, {small:,} -> {large:,} queries",
            f"{cluster[case][large] / cluster[case][small]:.1f}x (pairs grow {(large / small) ** 2:g}x)",
        )
    for method in ("exact", "approx"):
        _growth(
            f"scaling.clustering_time_growth_{method}_{small}_{large}",
            cluster[method][small],
            cluster[method][large],
            large / small,
            2,
            "the pairs' growth",
        )
    one, most = concurrency[0], concurrency[-1]
    gain = at_once[most]["jobs_per_s"] / at_once[one]["jobs_per_s"]
    figure(f"throughput gain, {one} -> {most} at once", f"{gain:.2f}x")
    ratio(
        f"scaling.throughput_gain_{one}_{most}",
        gain,
        ">= 1 (more at once is no slower; informational, not a project target)",
        gain >= 1,
    )
    q0, q1 = query_counts[0], query_counts[-1]
    _growth(
        f"scaling.job_time_growth_{q0}_{q1}_queries",
        per_query[q0]["seconds"],
        per_query[q1]["seconds"],
        q1 / q0,
        1,
        "the queries' growth",
    )

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    note = f"{os.cpu_count()} cores, load average {load_at_start} at start, {load} at end" + (
        " (--quick sizes)" if quick else ""
    )
    if quick:
        with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
            path = Path(tmp) / "bench-scaling.png"
            if draw(path, cluster, at_once, per_query, note):
                figure("plot (--quick, temporary file, removed)", f"{path.stat().st_size:,} bytes")
        warn("--quick runs the small sizes only; docs/bench-scaling.png comes from a full run")
    elif draw(PLOT, cluster, at_once, per_query, note):
        figure("plot", str(PLOT))
