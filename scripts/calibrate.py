#!/usr/bin/env python3
"""Calibrates the hashing provider's defaults (eps, min_samples, gap threshold) on the labelled pages.

For every page of shared/eval: extract its segments, embed segments and the
page's Search Console-like rows with the hashing embedder, cluster, analyze the
gaps, write the result as a job result JSON, and let evalkit's scorer judge it.
Both gap similarities are scored ("lexical" and "cosine"). The defaults are
picked on a plateau, not at a peak: the grid point whose neighbourhood (one step
in each direction) has the best worst-case F1; ties go to the better own F1,
then to the better mean F1 two steps around, then to the middle of the grid.

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

from pageperfect.analysis.clustering import cluster_keywords  # noqa: E402
from pageperfect.analysis.embeddings import HashingEmbedder  # noqa: E402
from pageperfect.analysis.gaps import analyze_gaps  # noqa: E402
from pageperfect.models import KeywordRow  # noqa: E402
from pageperfect.analysis.segment import Segment, extract_page, segment_text_for_embedding  # noqa: E402

EVAL_DIR = ROOT.parent / "shared" / "eval"
EPS_GRID = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6]
# min_samples 1 clusters exactly like 2 once noise points become singletons, so it is left out.
MIN_SAMPLES_GRID = [2, 3, 4]
THRESHOLD_GRIDS = {
    "lexical": [round(0.30 + 0.05 * i, 3) for i in range(14)],  # 0.30 .. 0.95, share of query words
    "cosine": [round(0.10 + 0.05 * i, 3) for i in range(11)],  # 0.10 .. 0.60
}
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


def run_grid(
    pages: list[Page], topics: dict, evalkit: ModuleType, eps_grid, ms_grid, thr_grid, similarity: str
) -> dict:
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
                    report = analyze_gaps(
                        clusters, page.segment_vectors, page.segments, threshold=threshold, similarity=similarity
                    )
                    (out / f"{page.name}.json").write_text(json.dumps(job_result(clusters, report)))
                _, precision, recall, f1 = evalkit.score(topics, out)
                scores[(eps, min_samples, threshold)] = (f1, precision, recall)
    return scores


def _around(scores: dict, grids: tuple, key: tuple, steps: int) -> list[float]:
    index = [grid.index(value) for grid, value in zip(grids, key)]
    ranges = [range(max(0, i - steps), min(len(g), i + steps + 1)) for g, i in zip(grids, index)]
    return [scores[tuple(g[i] for g, i in zip(grids, point))][0] for point in itertools.product(*ranges)]


def neighbourhood_floor(scores: dict, eps_grid, ms_grid, thr_grid) -> dict:
    """For every grid point, the worst F1 within one grid step in each dimension."""
    grids = (eps_grid, ms_grid, thr_grid)
    return {key: min(_around(scores, grids, key, 1)) for key in scores}


def choose(scores: dict, eps_grid, ms_grid, thr_grid) -> tuple[float, int, float]:
    """The point with the best one-step floor; ties go to the best own F1, then to the best two-step mean,
    then to the point nearest the middle of the grid."""
    grids = (eps_grid, ms_grid, thr_grid)
    floor = neighbourhood_floor(scores, *grids)

    def rank(key: tuple) -> tuple:
        wide = _around(scores, grids, key, 2)
        off_centre = sum(abs(g.index(v) - (len(g) - 1) / 2) / len(g) for g, v in zip(grids, key))
        return (round(floor[key], 4), round(scores[key][0], 4), round(sum(wide) / len(wide), 4), -off_centre)

    return max(scores, key=rank)


def plateau(scores: dict, chosen: tuple[float, int, float], eps_grid, thr_grid, level: float) -> dict:
    eps, min_samples, threshold = chosen
    thresholds = [t for t in thr_grid if scores[(eps, min_samples, t)][0] >= level]
    epses = [e for e in eps_grid if scores[(e, min_samples, threshold)][0] >= level]
    return {
        "level": level,
        "thresholds": [min(thresholds), max(thresholds)] if thresholds else None,
        "eps": [min(epses), max(epses)] if epses else None,
    }


def leave_one_page_out(pages, topics, evalkit, eps_grid, ms_grid, thr_grid, similarity: str) -> list[dict]:
    """Choose on all pages but one, score the one left out: a check that the choice travels."""
    out = []
    for held in pages:
        train = [p for p in pages if p is not held]
        train_topics = {p.name: topics[p.name] for p in train}
        scores = run_grid(train, train_topics, evalkit, eps_grid, ms_grid, thr_grid, similarity)
        chosen = choose(scores, eps_grid, ms_grid, thr_grid)
        test = run_grid(
            [held], {held.name: topics[held.name]}, evalkit, [chosen[0]], [chosen[1]], [chosen[2]], similarity
        )
        f1, precision, recall = test[chosen]
        out.append({"held_out": held.name, "chosen": chosen, "f1": f1, "precision": precision, "recall": recall})
    return out


def print_table(scores: dict, eps_grid, ms_grid, thr_grid) -> None:
    print("eps   ms | " + " ".join(f"{t:5.2f}" for t in thr_grid))
    for eps, min_samples in itertools.product(eps_grid, ms_grid):
        cells = " ".join(f"{scores[(eps, min_samples, t)][0]:5.2f}" for t in thr_grid)
        print(f"{eps:5.2f} {min_samples:2d} | {cells}")


def calibrate(pages, topics, evalkit, similarity: str) -> dict:
    eps_grid, ms_grid, thr_grid = EPS_GRID, MIN_SAMPLES_GRID, THRESHOLD_GRIDS[similarity]
    scores = run_grid(pages, topics, evalkit, eps_grid, ms_grid, thr_grid, similarity)
    floor = neighbourhood_floor(scores, eps_grid, ms_grid, thr_grid)
    chosen = choose(scores, eps_grid, ms_grid, thr_grid)
    f1, precision, recall = scores[chosen]
    print(f"\n== similarity {similarity}: F1 by gap threshold (columns), eps and min_samples (rows)")
    print_table(scores, eps_grid, ms_grid, thr_grid)
    flat = plateau(scores, chosen, eps_grid, thr_grid, TARGET_F1)
    print(
        f"chosen eps={chosen[0]} min_samples={chosen[1]} gap_threshold={chosen[2]}: "
        f"precision {precision:.2f} recall {recall:.2f} F1 {f1:.2f}; "
        f"worst F1 one grid step around it {floor[chosen]:.2f}"
    )
    print(f"F1 >= {TARGET_F1}: thresholds {flat['thresholds']} at eps {chosen[0]}; eps {flat['eps']} at threshold "
          f"{chosen[2]} (min_samples {chosen[1]})")
    return {
        "similarity": similarity,
        "grid": [{"eps": k[0], "min_samples": k[1], "gap_threshold": k[2], "f1": v[0], "precision": v[1],
                  "recall": v[2], "neighbourhood_floor": floor[k]} for k, v in scores.items()],
        "chosen": {"eps": chosen[0], "min_samples": chosen[1], "gap_threshold": chosen[2],
                   "f1": f1, "precision": precision, "recall": recall, "neighbourhood_floor": floor[chosen]},
        "plateau": flat,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--json", type=Path, help="write the grids and the choices here")
    args = parser.parse_args(argv)

    evalkit = load_evalkit(args.eval_dir)
    topics = json.loads((args.eval_dir / "topics.json").read_text())
    embedder = HashingEmbedder()
    pages = prepare(args.eval_dir, topics, evalkit, embedder)
    print(f"{len(pages)} pages, {sum(len(t['topics']) for t in topics.values())} topics, embedder {embedder.model}")
    runs = {similarity: calibrate(pages, topics, evalkit, similarity) for similarity in THRESHOLD_GRIDS}
    best = max(runs.values(), key=lambda run: (run["chosen"]["neighbourhood_floor"], run["chosen"]["f1"]))
    chosen = best["chosen"]
    key = (chosen["eps"], chosen["min_samples"], chosen["gap_threshold"])
    print(f"\n== defaults: similarity {best['similarity']} eps {key[0]} min_samples {key[1]} gap_threshold {key[2]}")
    lines, *_ = evalkit.score(topics, _write_one(pages, key, best["similarity"]))
    print("\n".join(lines))

    held_out = leave_one_page_out(
        pages, topics, evalkit, EPS_GRID, MIN_SAMPLES_GRID, THRESHOLD_GRIDS[best["similarity"]], best["similarity"]
    )
    print("\nleave one page out (choose on two pages, score the third):")
    for item in held_out:
        print(f"  {item['held_out']:12s} chosen {item['chosen']}  P {item['precision']:.2f} "
              f"R {item['recall']:.2f} F1 {item['f1']:.2f}")

    if args.json:
        args.json.write_text(json.dumps({
            "embedder": embedder.model, "runs": runs, "defaults": {**chosen, "similarity": best["similarity"]},
            "leave_one_page_out": held_out,
        }, indent=1))
    return 0


def _write_one(pages: list[Page], chosen: tuple[float, int, float], similarity: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="calibrate-"))
    eps, min_samples, threshold = chosen
    for page in pages:
        clusters = cluster_keywords(page.rows, page.query_vectors, eps=eps, min_samples=min_samples)
        report = analyze_gaps(clusters, page.segment_vectors, page.segments, threshold=threshold, similarity=similarity)
        (out / f"{page.name}.json").write_text(json.dumps(job_result(clusters, report)))
    return out


if __name__ == "__main__":
    sys.exit(main())
