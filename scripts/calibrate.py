#!/usr/bin/env python3
"""Calibrates an embedding provider's analysis defaults on both labelled sets, with evalkit's scorer.

For every page of ../shared/eval (pages written for the tool) and ../shared/eval/real
(real articles with their clutter): extract the segments, embed the queries, the
queries without the page's subject, and the passages; then

1. fit the coverage weights (pageperfect.coverage.CoverageModel): a logistic
   regression of "the topic is covered" on the topic's mean signals (semantic,
   semantic_full, lexical), on all pages of both sets;
2. grid the grouping (neighbors, resolution) and the decision (threshold,
   split_margin) through the same functions the stages run (intent_labels,
   analyze_evidence), writing job-result JSON that evalkit scores;
3. choose on plateaus (the best mean one step around a point, not a peak), each
   setting by what it changes: the grouping (neighbors, resolution) by the worse of
   the two sets' ARI / 2 - (clusters per topic - 1) / 4 with no split; then at that
   grouping the decision (threshold, split_margin) by the worse of the two sets' gap
   F1 + ARI / 2 - (clusters per topic - 1) / 4, so a setting must hold on both. The
   first set's F1 must stay >= 0.95 (its target): only points that keep it are
   chosen, and a neighbour below it costs twice its shortfall;
4. leave one page out: the weights, the threshold and the split margin chosen without a
   page (the grouping settings kept at the choice), that page scored with them; pooled
   over the held-out pages of each set.

The hashing provider keeps its own method (DBSCAN and word coverage); for it the
script scores the current defaults on both sets.

    python scripts/calibrate.py [--provider minilm|hashing|openai] [--eval-dir DIR] [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pageperfect.analysis.clustering import cluster_keywords, clusters_from_labels, summarize_members  # noqa: E402
from pageperfect.analysis.coverage import CoverageModel, Evidence, passages_of  # noqa: E402
from pageperfect.analysis.defaults import PROVIDER_DEFAULTS  # noqa: E402
from pageperfect.analysis.gaps import analyze_evidence, analyze_gaps  # noqa: E402
from pageperfect.analysis.intents import intent_labels, strip_subject, subject_stems  # noqa: E402
from pageperfect.models import KeywordRow  # noqa: E402
from pageperfect.analysis.segment import extract_page, segment_text_for_embedding  # noqa: E402

EVAL_DIR = ROOT.parent / "shared" / "eval"
SETS = {"dev": Path("."), "real": Path("real")}
NEIGHBORS_GRID = [4, 5, 6]
RESOLUTION_GRID = [1.25, 1.5, 2.0]
THRESHOLD_GRID = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65]  # one step: a logit change of about 0.2
MARGIN_GRID = [1.0, 1.5, 2.0, 99.0]  # 99: never split


@dataclass
class Page:
    set: str
    name: str
    spec: dict
    rows: list[KeywordRow]
    segments: list
    passages: list
    subject: frozenset[str] = frozenset()
    vectors: np.ndarray | None = None
    stripped: np.ndarray | None = None
    passage_vectors: np.ndarray | None = None
    segment_vectors: np.ndarray | None = None
    cache: dict = field(default_factory=dict)

    @property
    def queries(self) -> list[str]:
        return [r.query for r in self.rows]

    @property
    def impressions(self) -> np.ndarray:
        return np.array([r.impressions for r in self.rows])


def load_evalkit(eval_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("evalkit", eval_dir / "evalkit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_pages(eval_dir: Path, evalkit: ModuleType, passage_kinds: tuple[str, ...]) -> list[Page]:
    pages = []
    for set_name, sub in SETS.items():
        topics = json.loads((eval_dir / sub / "topics.json").read_text())
        for name, spec in topics.items():
            html = (eval_dir / sub / "site" / f"{name}.html").read_text(encoding="utf-8", errors="replace")
            extracted = extract_page(html, f"http://127.0.0.1/{name}.html")
            rows = [KeywordRow(**row) for row in evalkit.rows(spec)]
            pages.append(
                Page(set_name, name, spec, rows, extracted.segments, passages_of(extracted.segments, passage_kinds))
            )
    return pages


def embed_pages(pages: list[Page], embed) -> None:
    for p in pages:
        p.subject = subject_stems(p.queries)
        p.vectors = embed(p.queries)
        p.stripped = embed([strip_subject(q, p.subject) for q in p.queries])
        p.passage_vectors = embed([x.embed_text for x in p.passages])
        p.segment_vectors = embed([segment_text_for_embedding(s) for s in p.segments])


def topic_signals(page: Page, model: CoverageModel) -> tuple[np.ndarray, np.ndarray]:
    """Per labelled topic of the page: the mean of its queries' best signals, and whether it is covered."""
    ev = _evidence(page, model).per_query()
    index = {q: i for i, q in enumerate(page.queries)}
    x, y = [], []
    for topic in page.spec["topics"].values():
        rows = [index[q] for q in topic["queries"] if q in index]
        x.append([ev.semantic[rows].mean(), ev.semantic_full[rows].mean(), ev.lexical[rows].mean()])
        y.append(not topic["gap"])
    return np.array(x), np.array(y)


def fit_model(pages: list[Page], base: CoverageModel) -> CoverageModel:
    from sklearn.linear_model import LogisticRegression

    xs, ys = zip(*(topic_signals(p, base) for p in pages))
    fit = LogisticRegression(class_weight="balanced").fit(np.concatenate(xs), np.concatenate(ys))
    w = fit.coef_[0]
    return replace(
        base,
        semantic=round(float(w[0]), 3),
        semantic_full=round(float(w[1]), 3),
        lexical=round(float(w[2]), 3),
        bias=round(float(fit.intercept_[0]), 3),
    )


def _evidence(page: Page, model: CoverageModel) -> Evidence:
    return Evidence(page.queries, page.vectors, page.stripped, page.subject, page.passages, page.passage_vectors, model)


def clusters_for(page: Page, neighbors: int, resolution: float):
    key = ("intents", neighbors, resolution)
    if key not in page.cache:
        labels = intent_labels(
            page.queries, page.vectors, page.stripped, page.subject, neighbors=neighbors, resolution=resolution
        )
        page.cache[key] = clusters_from_labels(page.rows, page.vectors, labels)
    return page.cache[key]


def job_result(clusters, report) -> dict:
    """The parts of a job's result JSON that evalkit reads: the final groups (split parts included) and gaps."""
    return {
        "clusters": [{"cluster_id": g.cluster_id, "keywords": g.keywords} for g in report.gaps],
        "gaps": [{"cluster_id": g.cluster_id, "keywords": g.keywords, "has_gap": g.has_gap} for g in report.gaps],
    }


def evidence_report(page: Page, model: CoverageModel, neighbors: int, resolution: float):
    clusters = clusters_for(page, neighbors, resolution)
    return clusters, analyze_evidence(
        clusters,
        page.impressions,
        _evidence(page, model),
        summarize=lambda rows: summarize_members(page.rows, page.vectors, rows),
        neighbors=neighbors,
    )


def score(pages: list[Page], evalkit: ModuleType, report_of) -> dict[str, dict]:
    """evalkit's figures per set for the reports `report_of(page)` gives."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in SETS:
            chosen = [p for p in pages if p.set == set_name]
            if not chosen:
                continue
            folder = Path(tmp) / set_name
            folder.mkdir()
            for p in chosen:
                (folder / f"{p.name}.json").write_text(json.dumps(job_result(*report_of(p))))
            topics = {p.name: p.spec for p in chosen}
            lines, precision, recall, f1 = evalkit.score(topics, folder)
            split, ari = evalkit.grouping(topics, folder)
            out[set_name] = {
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "clusters_per_topic": split,
                "ari": ari,
                "lines": lines,
            }
    return out


DEV_F1_FLOOR = 0.95  # the target on the first set (../shared/eval): a setting below it is not chosen


def objective(figures: dict[str, dict]) -> float:
    """The worse of the two sets' F1 + ARI / 2 - (clusters per topic - 1) / 4: a setting must hold on both.
    A first-set F1 under DEV_F1_FLOOR costs twice the shortfall, so a plateau's mean counts it."""
    value = min(v["f1"] + 0.5 * v["ari"] - 0.25 * max(0.0, v["clusters_per_topic"] - 1.0) for v in figures.values())
    if "dev" in figures:
        value -= 2.0 * max(0.0, DEV_F1_FLOOR - figures["dev"]["f1"])
    return value


def meets_floor(figures: dict[str, dict]) -> bool:
    return "dev" not in figures or figures["dev"]["f1"] >= DEV_F1_FLOOR - 1e-9


GRIDS = {
    "neighbors": NEIGHBORS_GRID,
    "resolution": RESOLUTION_GRID,
    "threshold": THRESHOLD_GRID,
    "split_margin": MARGIN_GRID,
}


def run_grid(pages, evalkit, model, grids=GRIDS) -> dict[tuple, dict]:
    results = {}
    for key in itertools.product(*grids.values()):
        neighbors, resolution, threshold, margin = key
        m = replace(model, threshold=threshold, split_margin=margin)
        results[key] = score(pages, evalkit, lambda p: evidence_report(p, m, neighbors, resolution))
    return results


def grouping_objective(figures: dict[str, dict]) -> float:
    """The worse of the two sets' ARI / 2 - (clusters per topic - 1) / 4: how well queries are grouped."""
    return min(0.5 * v["ari"] - 0.25 * max(0.0, v["clusters_per_topic"] - 1.0) for v in figures.values())


def _plateau(value_of, axes: list[list], key: tuple, free: set[int]) -> float:
    """The mean of value_of over the points one step around key along the axes in `free`. Past the grid's edge
    the edge itself counts again, so an edge point is not favoured for having fewer (worse) neighbours."""
    idx = [axis.index(v) for axis, v in zip(axes, key)]
    steps = [
        [min(len(a) - 1, max(0, i + d)) for d in ((-1, 0, 1) if n in free else (0,))]
        for n, (a, i) in enumerate(zip(axes, idx))
    ]
    return float(np.mean([value_of(tuple(a[i] for a, i in zip(axes, point))) for point in itertools.product(*steps)]))


def choose(results: dict[tuple, dict], grids=GRIDS) -> tuple:
    """The grouping, then the decision, each on a plateau (the best mean one step around it, not a peak).

    1. neighbors and resolution: the best grouping objective with no split (the largest split margin),
       averaged over the thresholds, on a plateau of the grouping axes;
    2. threshold and split margin at that grouping: among the points whose first-set F1 meets DEV_F1_FLOOR
       (all of them when none does), the best objective on a plateau of the decision axes.
    Ties go to the point's own value, then to the first in grid order."""
    axes = list(grids.values())
    names = list(grids)
    g_axes = {names.index("neighbors"), names.index("resolution")}
    d_axes = {names.index("threshold"), names.index("split_margin")}
    no_split = max(grids["split_margin"])

    def grouping(key: tuple) -> float:
        n, r = key[0], key[1]
        return float(np.mean([grouping_objective(results[(n, r, t, no_split)]) for t in grids["threshold"]]))

    groupings = sorted({k[:2] for k in results}, key=lambda k: (axes[0].index(k[0]), axes[1].index(k[1])))
    best_g = max(
        groupings,
        key=lambda g: (
            round(_plateau(grouping, axes, (*g, axes[2][0], no_split), g_axes), 4),
            round(grouping((*g, axes[2][0], no_split)), 4),
        ),
    )
    at = [k for k in results if k[:2] == best_g]
    candidates = [k for k in at if meets_floor(results[k])] or at
    return max(
        candidates,
        key=lambda k: (
            round(_plateau(lambda p: objective(results[p]), axes, k, d_axes), 4),
            round(objective(results[k]), 4),
        ),
    )


def leave_one_page_out(pages, evalkit, base, grids) -> dict[str, dict]:
    """Weights and settings chosen without each page, then that page scored; counts pooled per set."""
    counts = {s: {"tp": 0, "fp": 0, "fn": 0} for s in SETS}
    per_page = []
    for held in pages:
        rest = [p for p in pages if p is not held]
        model = fit_model(rest, base)
        key = choose(run_grid(rest, evalkit, model, grids), grids)
        neighbors, resolution, threshold, margin = key
        m = replace(model, threshold=threshold, split_margin=margin)
        figures = score([held], evalkit, lambda p: evidence_report(p, m, neighbors, resolution))[held.set]
        for line in figures["lines"]:  # "ok  page/topic: truth=gap reported_gap_share=0.83"
            match = re.match(r"^(?:ok |BAD) .+?: truth=(gap|covered) reported_gap_share=([0-9.]+)$", line)
            if not match:
                continue
            truth_gap, reported_gap = match.group(1) == "gap", float(match.group(2)) > 0.5
            c = counts[held.set]
            c["tp"] += truth_gap and reported_gap
            c["fp"] += reported_gap and not truth_gap
            c["fn"] += truth_gap and not reported_gap
        per_page.append({"held_out": f"{held.set}/{held.name}", "chosen": key, "f1": figures["f1"]})
    pooled = {}
    for s, c in counts.items():
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        pooled[s] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return {"pooled": pooled, "pages": per_page}


def print_figures(label: str, figures: dict[str, dict]) -> None:
    for s, v in figures.items():
        print(
            f"{label:28s} {s:4s}: precision {v['precision']:.2f} recall {v['recall']:.2f} F1 {v['f1']:.2f}; "
            f"clusters per topic {v['clusters_per_topic']:.2f}, ARI {v['ari']:.2f}"
        )


def make_embedder(provider: str):
    from pageperfect.analysis.embeddings import make_embedder as make
    from pageperfect.settings import Settings

    settings = Settings()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return make(provider, api_key=key, base_url=settings.openai_base_url, model=settings.embedding_model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", default="minilm")
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--json", type=Path, help="write the grid, the choice and the held-out figures here")
    parser.add_argument("--quick", action="store_true", help="a smaller grid and no leave-one-page-out")
    args = parser.parse_args(argv)
    return calibrate(args.provider, make_embedder(args.provider), args.eval_dir, args.json, args.quick)


def calibrate(provider: str, embedder, eval_dir: Path, json_out: Path | None, quick: bool) -> int:
    evalkit = load_evalkit(eval_dir)
    defaults = PROVIDER_DEFAULTS[provider]
    base = defaults.coverage or CoverageModel(0.0, 0.0, 0.0, 0.0)
    pages = load_pages(eval_dir, evalkit, base.passages)
    print(f"{len(pages)} pages, {sum(len(p.spec['topics']) for p in pages)} topics, embedder {embedder.model}")
    embed_pages(pages, embedder.embed_sync)
    out: dict = {"provider": provider, "model": embedder.model}

    if defaults.method == "dbscan":

        def legacy(p):
            clusters = cluster_keywords(p.rows, p.vectors, eps=defaults.eps, min_samples=defaults.min_samples)
            report = analyze_gaps(
                clusters,
                p.segment_vectors,
                p.segments,
                threshold=defaults.gap_threshold,
                similarity=defaults.similarity,
            )
            return clusters, report

        figures = score(pages, evalkit, legacy)
        print_figures(f"defaults ({defaults.similarity})", figures)
        out["defaults"] = figures
    else:
        model = fit_model(pages, base)
        print(
            f"coverage weights: semantic {model.semantic} semantic_full {model.semantic_full} "
            f"lexical {model.lexical} bias {model.bias}"
        )
        grids = dict(GRIDS)
        if quick:
            grids = {
                "neighbors": [defaults.neighbors],
                "resolution": [defaults.resolution],
                "threshold": THRESHOLD_GRID,
                "split_margin": MARGIN_GRID,
            }
        results = run_grid(pages, evalkit, model, grids)
        key = choose(results, grids)
        print(f"chosen neighbors {key[0]} resolution {key[1]} threshold {key[2]} split_margin {key[3]}")
        print_figures("chosen", results[key])
        for name, values in grids.items():  # stability: the objective along each axis through the choice
            line = []
            for v in values:
                point = tuple(v if n == name else k for n, k in zip(grids, key))
                line.append(f"{v}:{objective(results[point]):.2f}")
            print(f"  objective along {name}: {' '.join(line)}")
        out.update(
            {
                "weights": {
                    "semantic": model.semantic,
                    "semantic_full": model.semantic_full,
                    "lexical": model.lexical,
                    "bias": model.bias,
                },
                "chosen": dict(zip(grids, key)),
                "figures": {s: {k: v for k, v in f.items() if k != "lines"} for s, f in results[key].items()},
                "grid": [
                    {
                        **dict(zip(grids, k)),
                        **{s: {m: f[m] for m in ("f1", "clusters_per_topic", "ari")} for s, f in r.items()},
                    }
                    for k, r in results.items()
                ],
            }
        )
        for line in results[key]["real"]["lines"] + results[key]["dev"]["lines"]:
            print("  " + line)
        if not quick:
            # The grouping settings stay at the choice (they read no labels but through the objective);
            # the weights, the threshold and the margin are chosen again without each page.
            held_grids = {**grids, "neighbors": [key[0]], "resolution": [key[1]]}
            held = leave_one_page_out(pages, evalkit, base, held_grids)
            for s, v in held["pooled"].items():
                print(
                    f"leave one page out {s}: precision {v['precision']:.2f} recall {v['recall']:.2f} F1 {v['f1']:.2f}"
                )
            out["leave_one_page_out"] = held
    if json_out:
        json_out.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
