#!/usr/bin/env python3
"""Calibrates the hashing provider's defaults (eps, min_samples, gap threshold) on the labelled pages.

For every page of shared/eval: extract its segments, embed segments and the
page's Search Console-like rows with the hashing embedder, cluster, analyze the
gaps, write the result as a job result JSON, and let evalkit's scorer judge it.
The defaults are picked on a plateau: the grid point whose neighbourhood (one
step in each direction) has the best worst-case F1, not the single best point.

    python scripts/calibrate.py [--eval-dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pageperfect.clustering import cluster_keywords  # noqa: E402
from pageperfect.embeddings import HashingEmbedder  # noqa: E402
from pageperfect.gaps import analyze_gaps  # noqa: E402
from pageperfect.models import KeywordRow  # noqa: E402
from pageperfect.segment import Segment, extract_page, segment_text_for_embedding  # noqa: E402

EVAL_DIR = ROOT.parent / "shared" / "eval"
EPS_GRID = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
MIN_SAMPLES_GRID = [1, 2, 3]
THRESHOLD_GRID = [round(0.30 + 0.025 * i, 3) for i in range(15)]  # 0.30 .. 0.65
TARGET_F1 = 0.85


@dataclass
class Page:
    name: str
    rows: list[KeywordRow]
    query_vectors: np.ndarray
    segments: list[Segment]
    segment_vectors: np.ndarray


def load_evalkit(eval_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("evalkit", eval_dir / "evalkit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(eval_dir: Path, topics: dict, evalkit: ModuleType, embedder: HashingEmbedder) -> list[Page]:
    pages = []
    for name, spec in topics.items():
        html = (eval_dir / "site" / f"{name}.html").read_text(encoding="utf-8")
        extracted = extract_page(html, f"http://127.0.0.1/{name}.html")
        rows = [KeywordRow(**row) for row in evalkit.rows(spec)]
        pages.append(
            Page(
                name=name,
                rows=rows,
                query_vectors=embedder.embed_sync([r.query for r in rows]),
                segments=extracted.segments,
                segment_vectors=embedder.embed_sync([segment_text_for_embedding(s) for s in extracted.segments]),
            )
        )
    return pages


def job_result(clusters: list, report) -> dict:
    """The parts of a job's result JSON that evalkit's scorer reads."""
    return {
        "clusters": [{"cluster_id": c.cluster_id, "keywords": c.keywords} for c in clusters],
        "gaps": [
            {
                "cluster_id": g.cluster_id,
                "keywords": g.keywords,
                "has_gap": g.has_gap,
                "total_impressions": g.total_impressions,
                "avg_position": g.avg_position,
                "opportunity_score": g.opportunity_score,
            }
            for g in report.gaps
        ],
    }


def run_grid(pages: list[Page], topics: dict, evalkit: ModuleType, eps_grid, ms_grid, thr_grid) -> dict:
    """F1, precision and recall for every (eps, min_samples, threshold), scored by evalkit."""
    scores: dict[tuple[float, int, float], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for eps, min_samples in itertools.product(eps_grid, ms_grid):
            clustered = [
                cluster_keywords(p.rows, p.query_vectors, eps=eps, min_samples=min_samples) for p in pages
            ]
            for threshold in thr_grid:
                out = Path(tmp) / f"{eps}-{min_samples}-{threshold}"
                out.mkdir()
                for page, clusters in zip(pages, clustered):
                    report = analyze_gaps(clusters, page.segment_vectors, page.segments, threshold=threshold)
                    (out / f"{page.name}.json").write_text(json.dumps(job_result(clusters, report)))
                _, precision, recall, f1 = evalkit.score(topics, out)
                scores[(eps, min_samples, threshold)] = (f1, precision, recall)
    return scores


def neighbourhood_floor(scores: dict, eps_grid, ms_grid, thr_grid) -> dict:
    """For every grid point, the worst F1 within one grid step in each dimension."""
    floor = {}
    for i, j, k in itertools.product(range(len(eps_grid)), range(len(ms_grid)), range(len(thr_grid))):
        around = [
            scores[(eps_grid[a], ms_grid[b], thr_grid[c])][0]
            for a in range(max(0, i - 1), min(len(eps_grid), i + 2))
            for b in range(max(0, j - 1), min(len(ms_grid), j + 2))
            for c in range(max(0, k - 1), min(len(thr_grid), k + 2))
        ]
        floor[(eps_grid[i], ms_grid[j], thr_grid[k])] = min(around)
    return floor


def choose(scores: dict, floor: dict) -> tuple[float, int, float]:
    """The point with the best neighbourhood floor; ties go to the better own F1, then to the middle of the grid."""
    return max(scores, key=lambda key: (round(floor[key], 4), round(scores[key][0], 4)))


def plateau(scores: dict, chosen: tuple[float, int, float], eps_grid, thr_grid, level: float) -> dict:
    eps, min_samples, threshold = chosen
    thresholds = [t for t in thr_grid if scores[(eps, min_samples, t)][0] >= level]
    epses = [e for e in eps_grid if scores[(e, min_samples, threshold)][0] >= level]
    return {
        "level": level,
        "thresholds": [min(thresholds), max(thresholds)] if thresholds else None,
        "eps": [min(epses), max(epses)] if epses else None,
    }


def leave_one_page_out(pages, topics, evalkit, eps_grid, ms_grid, thr_grid) -> list[dict]:
    """Choose on all pages but one, score the one left out: a check that the choice travels."""
    out = []
    for held in pages:
        train = [p for p in pages if p is not held]
        train_topics = {p.name: topics[p.name] for p in train}
        scores = run_grid(train, train_topics, evalkit, eps_grid, ms_grid, thr_grid)
        chosen = choose(scores, neighbourhood_floor(scores, eps_grid, ms_grid, thr_grid))
        test = run_grid([held], {held.name: topics[held.name]}, evalkit, [chosen[0]], [chosen[1]], [chosen[2]])
        f1, precision, recall = test[chosen]
        out.append({"held_out": held.name, "chosen": chosen, "f1": f1, "precision": precision, "recall": recall})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--json", type=Path, help="write the grid and the choice here")
    args = parser.parse_args(argv)

    evalkit = load_evalkit(args.eval_dir)
    topics = json.loads((args.eval_dir / "topics.json").read_text())
    embedder = HashingEmbedder()
    pages = prepare(args.eval_dir, topics, evalkit, embedder)
    eps_grid, ms_grid, thr_grid = EPS_GRID, MIN_SAMPLES_GRID, THRESHOLD_GRID
    scores = run_grid(pages, topics, evalkit, eps_grid, ms_grid, thr_grid)
    floor = neighbourhood_floor(scores, eps_grid, ms_grid, thr_grid)

    print(f"F1 by gap threshold (columns) for each eps / min_samples; embedder {embedder.model}")
    print("eps  ms | " + " ".join(f"{t:5.3f}" for t in thr_grid))
    for eps, min_samples in itertools.product(eps_grid, ms_grid):
        cells = " ".join(f"{scores[(eps, min_samples, t)][0]:5.2f}" for t in thr_grid)
        print(f"{eps:4.2f} {min_samples:2d} | {cells}")

    chosen = choose(scores, floor)
    f1, precision, recall = scores[chosen]
    flat = plateau(scores, chosen, eps_grid, thr_grid, TARGET_F1)
    print(
        f"\nchosen eps={chosen[0]} min_samples={chosen[1]} gap_threshold={chosen[2]}: "
        f"precision {precision:.2f} recall {recall:.2f} F1 {f1:.2f}; "
        f"worst F1 one grid step around it {floor[chosen]:.2f}"
    )
    print(f"F1 >= {TARGET_F1} for thresholds {flat['thresholds']} (eps {chosen[0]}) and eps {flat['eps']} "
          f"(threshold {chosen[2]}), min_samples {chosen[1]}")
    lines, *_ = evalkit.score(topics, _write_one(pages, chosen))
    print("\n".join(lines))

    held_out = leave_one_page_out(pages, topics, evalkit, eps_grid, ms_grid, thr_grid)
    print("\nleave one page out (choose on two pages, score the third):")
    for item in held_out:
        print(f"  {item['held_out']:12s} chosen {item['chosen']}  P {item['precision']:.2f} "
              f"R {item['recall']:.2f} F1 {item['f1']:.2f}")

    if args.json:
        args.json.write_text(json.dumps({
            "embedder": embedder.model,
            "grid": [{"eps": k[0], "min_samples": k[1], "gap_threshold": k[2], "f1": v[0], "precision": v[1],
                      "recall": v[2], "neighbourhood_floor": floor[k]} for k, v in scores.items()],
            "chosen": {"eps": chosen[0], "min_samples": chosen[1], "gap_threshold": chosen[2],
                       "f1": f1, "precision": precision, "recall": recall},
            "plateau": flat,
            "leave_one_page_out": held_out,
        }, indent=1))
    return 0


def _write_one(pages: list[Page], chosen: tuple[float, int, float]) -> Path:
    out = Path(tempfile.mkdtemp(prefix="calibrate-"))
    eps, min_samples, threshold = chosen
    for page in pages:
        clusters = cluster_keywords(page.rows, page.query_vectors, eps=eps, min_samples=min_samples)
        report = analyze_gaps(clusters, page.segment_vectors, page.segments, threshold=threshold)
        (out / f"{page.name}.json").write_text(json.dumps(job_result(clusters, report)))
    return out


if __name__ == "__main__":
    sys.exit(main())
