"""The site stage (pageperfect.analysis.site.analyze_site) at 100, 1,000 and 10,000 pages, against the page jobs.

Data: synthetic stored results of a site, as the site stage reads them from Postgres: per page
QUERIES_PER_PAGE queries (text, impressions, clicks, position) with their vectors and the vectors
of the queries without the subject, GROUPS_PER_PAGE final groups of which GAPS_PER_PAGE are gaps,
SEGMENTS_PER_PAGE passages with vectors; 384 dims (all-MiniLM-L6-v2). Pages belong to topics of
TOPIC_PAGES pages, which share some intents (cannibalization) and answer some of each other's gaps.

Each size runs in its own process, so its peak RSS (VmHWM) is its own. The baseline is the page
jobs' own analysis of the same pages in the same process: the intents (intents.group_queries),
the evidence and the coverage decision (coverage.Evidence, gaps.analyze_evidence) of a sample of
pages, times the number of pages (the crawl and the embedding of the jobs come on top, so the
baseline is low). The ratio is site stage time / page analysis time.

    .venv/bin/python -m bench --only site_stage          # 100, 1,000 and 10,000 pages
    .venv/bin/python -m bench.site_stage --child 1000    # one size, its figures as JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from bench.common import figure, ratio, title, warn

NAME = "site_stage"
NEEDS_STACK = False

DIMS = 384
QUERIES_PER_PAGE = 100
GROUPS_PER_PAGE = 20
GAPS_PER_PAGE = 3
SEGMENTS_PER_PAGE = 30
TOPIC_PAGES = 5
SIZES = (100, 1000, 10_000)
QUICK_SIZES = (100,)
SAMPLE_PAGES = 20  # pages whose own analysis is timed for the baseline
RATIO_TARGET = 1.0  # the site stage should cost less than the page analyses it reads


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _unit(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_site(pages: int, seed: int = 0):
    """SitePages with stored-looking vectors, and the inputs of each page's own analysis."""
    from pageperfect.analysis.coverage import Passage
    from pageperfect.analysis.site import PageGroup, SitePage

    rng = np.random.default_rng(seed)
    topics = max(1, pages // TOPIC_PAGES)
    # Each topic has GROUPS_PER_PAGE * 2 intents; a page takes GROUPS_PER_PAGE of its topic's.
    intent_centres = _unit(rng.standard_normal((topics, GROUPS_PER_PAGE * 2, DIMS), dtype=np.float32))
    per_group = QUERIES_PER_PAGE // GROUPS_PER_PAGE
    out = []
    for p in range(pages):
        topic = p % topics
        chosen = rng.choice(GROUPS_PER_PAGE * 2, GROUPS_PER_PAGE, replace=False)
        centres = intent_centres[topic, chosen]
        noise = rng.standard_normal((GROUPS_PER_PAGE, per_group, DIMS), dtype=np.float32) * 0.025
        vectors = _unit((centres[:, None, :] + noise).reshape(-1, DIMS))
        stripped = _unit(vectors + rng.standard_normal(vectors.shape, dtype=np.float32) * 0.01)
        queries = [
            f"t{topic} intent{chosen[g]} aspect{k} page{p}" for g in range(GROUPS_PER_PAGE) for k in range(per_group)
        ]
        impressions = rng.integers(10, 2000, len(queries)).astype(np.float64)
        clicks = np.floor(impressions * rng.uniform(0.005, 0.08, len(queries)))
        positions = rng.uniform(1, 30, len(queries))
        groups = [
            PageGroup(
                cluster_id=g,
                representative=queries[g * per_group],
                members=list(range(g * per_group, (g + 1) * per_group)),
                has_gap=g < GAPS_PER_PAGE,
                coverage=0.2 if g < GAPS_PER_PAGE else 0.9,
                opportunity_score=float(rng.uniform(0, 1)),
                segment_id=None if g < GAPS_PER_PAGE else f"p{p}s{g}",
            )
            for g in range(GROUPS_PER_PAGE)
        ]
        # Segments: one per covered group (near its centre), the rest on the topic's other intents.
        seg_centres = [centres[g] for g in range(GAPS_PER_PAGE, GROUPS_PER_PAGE)]
        others = rng.choice(GROUPS_PER_PAGE * 2, SEGMENTS_PER_PAGE - len(seg_centres))
        seg_centres += [intent_centres[topic, o] for o in others]
        passage_vectors = _unit(
            np.stack(seg_centres) + rng.standard_normal((SEGMENTS_PER_PAGE, DIMS), dtype=np.float32) * 0.03
        )
        passages = [
            Passage(
                f"p{p}s{j}",
                [f"t{topic} heading {j}"],
                f"t{topic} section {j} of page {p} intent"
                f"{chosen[j] if j < GROUPS_PER_PAGE else others[j - GROUPS_PER_PAGE]}",
                "segment",
            )
            for j in range(SEGMENTS_PER_PAGE)
        ]
        out.append(
            SitePage(
                url=f"https://site.example/p{p}",
                job_id=f"job-{p}",
                queries=queries,
                impressions=impressions,
                clicks=clicks,
                positions=positions,
                query_vectors=vectors,
                stripped_vectors=stripped,
                subject=frozenset(),
                groups=groups,
                passages=passages,
                passage_vectors=passage_vectors,
                coverage_score=0.8,
            )
        )
    return out


def page_analysis_seconds(pages) -> float:
    """The page jobs' own analysis of these pages (intents, evidence, decision), in seconds per page."""
    from pageperfect.analysis.clustering import summarize_members
    from pageperfect.analysis.coverage import Evidence
    from pageperfect.analysis.defaults import defaults_for
    from pageperfect.analysis.gaps import analyze_evidence
    from pageperfect.analysis.intents import group_queries
    from pageperfect.models import KeywordRow

    model = defaults_for("minilm").coverage
    started = time.perf_counter()
    for page in pages:
        rows = [
            KeywordRow.model_construct(query=q, clicks=float(c), impressions=float(i), ctr=0.0, position=float(x))
            for q, c, i, x in zip(page.queries, page.clicks, page.impressions, page.positions)
        ]
        clusters = group_queries(
            rows, page.query_vectors, page.stripped_vectors, page.subject, method="intents", eps=0.3, min_samples=2
        )
        evidence = Evidence(
            page.queries,
            page.query_vectors,
            page.stripped_vectors,
            page.subject,
            page.passages,
            page.passage_vectors,
            model,
        )
        analyze_evidence(
            clusters,
            page.impressions,
            evidence,
            summarize=lambda part, rows=rows, v=page.query_vectors: summarize_members(rows, v, part),
        )
    return (time.perf_counter() - started) / len(pages)


def child(pages: int) -> dict:
    from pageperfect.analysis.defaults import defaults_for
    from pageperfect.analysis.site import analyze_site

    site = synthetic_site(pages)
    loaded_rss = _peak_rss_bytes()
    started = time.perf_counter()
    result = analyze_site(site, defaults_for("minilm").coverage)
    seconds = time.perf_counter() - started
    peak = _peak_rss_bytes()
    per_page = page_analysis_seconds(site[:SAMPLE_PAGES])
    return {
        "pages": pages,
        "queries": sum(len(p.queries) for p in site),
        "groups": result.stats["groups"],
        "site_seconds": seconds,
        "page_seconds_each": per_page,
        "page_seconds_all": per_page * pages,
        "loaded_rss_mb": loaded_rss / 2**20,
        "peak_rss_mb": peak / 2**20,
        "cases": len(result.cannibalization),
        "links": len(result.links),
    }


async def run(quick: bool, stack: object = None) -> None:
    title("site stage: cannibalization and links across a site, against the page jobs' own analysis")
    for pages in QUICK_SIZES if quick else SIZES:
        done = subprocess.run(
            [sys.executable, "-m", "bench.site_stage", "--child", str(pages)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            warn(f"{pages} pages: the child failed: {done.stderr[-1500:]}")
            continue
        f = json.loads(done.stdout.strip().splitlines()[-1])
        figure(
            f"{pages:,} pages, {f['queries']:,} queries, {f['groups']:,} groups",
            f"site stage {f['site_seconds']:.1f} s, peak RSS {f['peak_rss_mb']:.0f} MB "
            f"(data alone {f['loaded_rss_mb']:.0f} MB); page analyses {f['page_seconds_all']:.1f} s "
            f"({f['page_seconds_each'] * 1000:.0f} ms a page); {f['cases']:,} cases, {f['links']:,} links",
        )
        share = f["site_seconds"] / f["page_seconds_all"]
        ratio(f"site_stage.vs_page_analysis_{pages}", share, f"< {RATIO_TARGET:g}", share < RATIO_TARGET)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=int, required=True)
    print(json.dumps(child(parser.parse_args().child)))
