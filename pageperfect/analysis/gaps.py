"""Which query clusters the page does not cover, and how much each is worth fixing.

A cluster is covered when some segment of the page is similar enough to it
(similarity >= threshold); otherwise it is a gap. Two similarities:

- "cosine": the cluster centroid against each segment embedding; for semantic
  embeddings.
- "lexical": the share of the cluster's query words (stop words dropped, word
  forms merged) that a segment contains, averaged over the cluster's queries.
  Bag-of-words cosine punishes long segments (a three-word query fully present
  in a sixty-word paragraph scores ~0.25, as low as a query sharing only the
  page's topic word with a short heading); word coverage does not. It is the
  similarity of the offline hashing provider.

Every cluster gets an opportunity score from its average position and impressions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from pageperfect.analysis.clustering import Cluster
from pageperfect.analysis.embeddings import content_stems
from pageperfect.analysis.intents import NEIGHBORS
from pageperfect.analysis.segment import headings_below_root

if TYPE_CHECKING:
    from pageperfect.analysis.coverage import Decision, Evidence


def legacy_score(position: float, impressions: float) -> float:
    """The old system's score: 0.7 * PositionScore + 0.3 * ImpressionScore.

    PositionScore = 1 / (1 + e^(0.5 * (position - 10))), ImpressionScore = log10(impressions + 1) / 10.
    It is highest for queries already at the top (position 1), so it ranks what
    already works rather than what could move.
    """
    position_score = 1.0 / (1.0 + math.exp(0.5 * (position - 10.0)))
    impression_score = math.log10(max(impressions, 0.0) + 1.0) / 10.0
    return 0.7 * position_score + 0.3 * impression_score


# Striking distance: a rise from position ~3 and a fall past position ~24.
_RISE_CENTER, _RISE_SLOPE = 3.5, 1.5
_FALL_CENTER, _FALL_SLOPE = 24.0, 0.3
IMPRESSIONS_SATURATION = 1e6  # the impression factor reaches 1 here


def _logistic(x: float) -> float:
    if x < -700:  # math.exp overflows
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def _position_bump(position: float) -> float:
    return _logistic(_RISE_SLOPE * (position - _RISE_CENTER)) * _logistic(-_FALL_SLOPE * (position - _FALL_CENTER))


_BUMP_PEAK = max(_position_bump(p / 10) for p in range(10, 1001))


def striking_score(position: float, impressions: float) -> float:
    """Opportunity of a query (cluster) at this average position with these impressions, in [0, 1].

    striking = bump(position) * impression_factor(impressions), where

      bump(p) = L(1.5 * (p - 3.5)) * L(-0.3 * (p - 24)) / peak,  L(x) = 1 / (1 + e^-x)
      impression_factor(i) = min(1, log10(i + 1) / 6)

    The bump is above 0.9 for positions 5 to 16 and above 0.5 from 4 to 23, small
    at the top (position 1: 0.02, position 3: 0.32) where there is little left to
    gain, and fades past 30 (30: 0.14, 40: 0.01) where a page needs more than an edit.
    The impression factor is logarithmic and reaches 1 at a million impressions,
    so it does not depend on the other queries of the job.
    """
    bump = _position_bump(position) / _BUMP_PEAK
    impression_factor = min(1.0, math.log10(max(impressions, 0.0) + 1.0) / math.log10(IMPRESSIONS_SATURATION))
    return min(1.0, bump) * impression_factor


SCORES: dict[str, Callable[[float, float], float]] = {"striking": striking_score, "legacy": legacy_score}
SIMILARITIES = ("cosine", "lexical")  # analyze_gaps; analyze_evidence weighs several signals


class SegmentLike(Protocol):
    segment_id: str
    heading_level: int
    heading_path: list[str]
    text: str


@dataclass
class SegmentMatch:
    segment_id: str
    heading_path: list[str]
    text: str
    similarity: float


@dataclass
class Gap:
    cluster_id: int
    representative: str
    keywords: list[str]
    total_impressions: float
    avg_position: float
    has_gap: bool
    opportunity_score: float
    best_match: SegmentMatch | None
    top_matches: list[SegmentMatch] = field(default_factory=list)  # best first, at most 3
    coverage: float | None = None  # evidence that the page answers it, in [0, 1] (the "evidence" similarity)
    decided_by: str = "similarity"  # "similarity" (threshold on one score), "evidence" (several signals), "llm"
    # Why: the best passages with their scores, the distinctive words found and missing, a split or merge, the judge.
    explanation: dict = field(default_factory=dict)


@dataclass
class GapReport:
    gaps: list[Gap]  # every cluster: gaps first, then covered ones, each by opportunity descending
    coverage_score: float
    threshold: float
    score: str
    method: str = "similarity"  # "similarity" (analyze_gaps) or "evidence" (analyze_evidence)


def _gap(cluster: Cluster, has_gap: bool, scorer: Callable, matches: list[SegmentMatch], **decision: Any) -> Gap:
    """A cluster's row of the report: its figures, the decision and its best passages (best first)."""
    return Gap(
        cluster_id=cluster.cluster_id,
        representative=cluster.representative,
        keywords=list(cluster.keywords),
        total_impressions=cluster.total_impressions,
        avg_position=cluster.avg_position,
        has_gap=has_gap,
        opportunity_score=float(scorer(cluster.avg_position, cluster.total_impressions)),
        best_match=matches[0] if matches else None,
        top_matches=matches,
        **decision,
    )


def coverage(clusters: Sequence[Cluster], covered: Sequence[bool]) -> float:
    """Share of impressions in covered clusters.

    When no cluster has impressions it is the share of covered clusters, and a
    page with no clusters at all is fully covered (1.0): nothing is missing.
    """
    if not clusters:
        return 1.0
    total = sum(c.total_impressions for c in clusters)
    if total > 0:
        return sum(c.total_impressions for c, ok in zip(clusters, covered) if ok) / total
    return sum(covered) / len(clusters)


BLOCK_CELLS = 2**22  # similarities computed at once (16 MB of float32), so big jobs stay small in memory

BlockScorer = Callable[[slice], np.ndarray]  # cluster rows -> (rows, segments) similarities


def _cosine_scorer(clusters: Sequence[Cluster], segment_embeddings: np.ndarray) -> BlockScorer:
    centroids = np.stack([np.asarray(c.centroid, dtype=np.float32) for c in clusters])
    seg = np.asarray(segment_embeddings, dtype=np.float32)
    if centroids.shape[1] != seg.shape[1]:
        raise ValueError(f"cluster centroids have {centroids.shape[1]} dims, segments {seg.shape[1]}")
    norms = np.linalg.norm(seg, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    seg_t = np.ascontiguousarray((seg / norms).T)
    return lambda rows: centroids[rows] @ seg_t


def segment_words(segment: SegmentLike) -> str:
    """A segment's text for word matching: its headings below the page's root (which every segment shares),
    then its text."""
    return " ".join([*headings_below_root(segment.heading_path, segment.heading_level), segment.text])


def _lexical_scorer(clusters: Sequence[Cluster], segments: Sequence[SegmentLike]) -> BlockScorer:
    """(clusters, segments) word coverage: per query, the share of its content stems that the
    segment (headings included) contains, each stem weighed by its rarity among the page's
    queries (smoothed idf), averaged over the cluster's queries.

    Queries without content words (only stop words) are left out of the average;
    a cluster of only such queries scores 0.
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    queries = [q for c in clusters for q in c.keywords]
    owner = np.repeat(np.arange(len(clusters)), [len(c.keywords) for c in clusters])
    texts = [segment_words(s) for s in segments]
    vectorizer = CountVectorizer(analyzer=content_stems, binary=True, dtype=np.float32)
    try:
        present = vectorizer.fit_transform(texts + queries)  # (segments + queries) x vocabulary, 0/1
    except ValueError:  # no content word anywhere: nothing can match
        return lambda rows: np.zeros((len(range(*rows.indices(len(clusters)))), len(segments)), dtype=np.float32)
    words = present[len(texts) :]  # queries x vocabulary
    # A word most of the page's queries share (the page's own subject: "fiddle leaf fig") says
    # little about which topic a query asks for; weigh words by their rarity among the queries.
    document_frequency = np.asarray(words.sum(axis=0)).ravel()
    rarity = (np.log((1 + len(queries)) / (1 + document_frequency)) + 1).astype(np.float32)
    words = (words @ sparse.diags(rarity)).tocsr()
    per_query = np.asarray(words.sum(axis=1)).ravel()
    has_words = per_query > 0
    words = sparse.diags(np.where(has_words, 1.0 / np.maximum(per_query, 1e-9), 0.0).astype(np.float32)) @ words
    counted = np.bincount(owner[has_words], minlength=len(clusters)).astype(np.float32)
    weights = np.where(has_words, 1.0 / np.maximum(counted[owner], 1), 0.0).astype(np.float32)
    mean = sparse.csr_matrix((weights, (owner, np.arange(len(queries)))), shape=(len(clusters), len(queries)))
    cluster_words = (mean @ words).tocsr()  # clusters x vocabulary: mean share each stem stands for
    present_t = present[: len(texts)].T.tocsc()  # vocabulary x segments
    return lambda rows: np.asarray((cluster_words[rows] @ present_t).todense(), dtype=np.float32)


def analyze_gaps(
    clusters: Sequence[Cluster],
    segment_embeddings: np.ndarray,
    segments: Sequence[SegmentLike],
    *,
    threshold: float,
    score: str = "striking",
    similarity: str = "cosine",
    top_k: int = 3,
) -> GapReport:
    """Matches every cluster against every segment and ranks the clusters.

    similarity is "cosine" (centroids against segment_embeddings) or "lexical"
    (query words found in each segment; segment_embeddings are not read). A page
    without segments covers nothing: every cluster is a gap.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {sorted(SCORES)}")
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; known: {list(SIMILARITIES)}")
    if similarity == "cosine" and len(segments) != len(segment_embeddings):
        raise ValueError(f"{len(segments)} segments but {len(segment_embeddings)} segment embeddings")
    scorer = SCORES[score]
    best_ids = np.zeros((len(clusters), 0), dtype=np.intp)
    best_sims = np.zeros((len(clusters), 0), dtype=np.float32)
    if clusters and len(segments):
        if similarity == "cosine":
            block_scorer = _cosine_scorer(clusters, segment_embeddings)
        else:
            block_scorer = _lexical_scorer(clusters, segments)
        k = min(top_k, len(segments))
        best_ids = np.empty((len(clusters), k), dtype=np.intp)
        best_sims = np.empty((len(clusters), k), dtype=np.float32)
        step = max(1, BLOCK_CELLS // len(segments))
        for start in range(0, len(clusters), step):
            rows = slice(start, min(len(clusters), start + step))
            block = block_scorer(rows)
            every_row = np.arange(block.shape[0])
            for rank in range(k):  # k argmax passes: cheaper than sorting, and ties keep page order
                best = np.argmax(block, axis=1)
                best_ids[rows, rank] = best
                best_sims[rows, rank] = block[every_row, best]
                block[every_row, best] = -np.inf

    gaps: list[Gap] = []
    for row, cluster in enumerate(clusters):
        matches = [
            SegmentMatch(
                segment_id=segments[j].segment_id,
                heading_path=list(segments[j].heading_path),
                text=segments[j].text,
                similarity=float(sim),
            )
            for j, sim in zip(best_ids[row], best_sims[row])
        ]
        best = matches[0] if matches else None
        gaps.append(_gap(cluster, best is None or best.similarity < threshold, scorer, matches))
    coverage_score = coverage(clusters, [not g.has_gap for g in gaps])
    gaps.sort(key=lambda g: (not g.has_gap, -g.opportunity_score, g.cluster_id))
    return GapReport(gaps=gaps, coverage_score=coverage_score, threshold=threshold, score=score)


DUPLICATE_COSINE = 0.9  # two gaps whose query centroids are this close are one gap


def analyze_evidence(
    clusters: Sequence[Cluster],
    impressions: np.ndarray,
    evidence: Evidence,
    *,
    score: str = "striking",
    summarize: Callable[[Sequence[int]], Cluster] | None = None,
    neighbors: int = NEIGHBORS,
) -> GapReport:
    """Coverage decided from several signals (pageperfect.coverage): one decision per cluster, or one per part
    when its queries clearly disagree and each part is an intent of its own (linked among its queries in the
    query graph of `neighbors` links per query and view); gaps whose centroids are near-identical are merged
    into one.

    `clusters` must carry member_indices into the evidence's queries; `summarize(rows)` builds the stats of a part of a
    split cluster (a new cluster id is given to each part).
    """
    from pageperfect.analysis.coverage import decide

    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {sorted(SCORES)}")
    scorer = SCORES[score]
    model = evidence.model
    per_query = evidence.per_query()
    decisions = decide(
        [c.member_indices for c in clusters],
        np.asarray(impressions, dtype=np.float64),
        per_query,
        model,
        links=lambda: evidence.query_links(neighbors),
    )
    next_id = max((c.cluster_id for c in clusters), default=-1) + 1
    groups: list[tuple[Cluster, Decision]] = []
    for cluster, parts in zip(clusters, decisions):
        if len(parts) == 1:
            groups.append((cluster, parts[0]))
            continue
        for part in parts:
            piece = summarize(part.members) if summarize else cluster
            piece.cluster_id = next_id
            next_id += 1
            groups.append((piece, part))
    groups = _merge_duplicate_gaps(groups, evidence, summarize)
    gaps = []
    for cluster, decision in groups:
        found = evidence.passages_for(decision.members)
        matches = [
            SegmentMatch(
                segment_id=p["segment_id"],
                heading_path=list(p["heading_path"]),
                text=p["text"],
                similarity=p["semantic"],
            )
            for p in found
        ]
        explanation: dict = {
            "logit": round(decision.logit, 4),
            "passages": found,
            "words": evidence.words_for(decision.members, found[0] if found else None),
            "signals": {
                name: round(float(np.mean(getattr(per_query, name)[decision.members])), 4)
                for name in ("semantic", "semantic_full", "lexical")
            },
        }
        if decision.split_from is not None:
            explanation["split_from"] = decision.split_from
            explanation["split_reason"] = (
                f"its queries disagree: some are clearly answered (logit >= {model.split_margin:g}) "
                f"and some clearly not (<= -{model.split_margin:g})"
            )
        if decision.evidence.get("not_split"):
            read_as = "answered" if decision.has_gap else "not answered"  # the other side from the verdict
            explanation["not_split"] = {
                "queries": [evidence.queries[i] for i in decision.evidence["not_split"]],
                "read_as": read_as,
                "reason": (
                    f"these queries read as {read_as} unlike the rest, but are not linked to each other as an "
                    "intent of their own, so they stay in this one"
                ),
            }
        if decision.evidence.get("merged"):
            explanation["merged"] = decision.evidence["merged"]
        gaps.append(
            _gap(
                cluster,
                decision.has_gap,
                scorer,
                matches,
                coverage=decision.coverage,
                decided_by="evidence",
                explanation=explanation,
            )
        )
    coverage_score = coverage([g for g in gaps], [not g.has_gap for g in gaps])
    gaps.sort(key=lambda g: (not g.has_gap, -g.opportunity_score, g.cluster_id))
    return GapReport(
        gaps=gaps, coverage_score=coverage_score, threshold=model.threshold, score=score, method="evidence"
    )


def _merge_duplicate_gaps(groups, evidence, summarize):
    """Gaps whose query centroids have cosine >= DUPLICATE_COSINE become one gap (the first keeps its id)."""
    from pageperfect.analysis.coverage import Decision, sigmoid

    gap_rows = [i for i, (_, d) in enumerate(groups) if d.has_gap]
    if len(gap_rows) < 2 or summarize is None:
        return groups
    centroids = np.stack([np.asarray(groups[i][0].centroid, dtype=np.float32) for i in gap_rows])
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    centroids /= norms
    close = centroids @ centroids.T >= DUPLICATE_COSINE
    owner = list(range(len(gap_rows)))
    for a in range(len(gap_rows)):
        for b in range(a + 1, len(gap_rows)):
            if close[a, b] and owner[b] == b:
                owner[b] = owner[a]
    if owner == list(range(len(gap_rows))):
        return groups
    merged: dict[int, list[int]] = {}
    for pos, own in enumerate(owner):
        merged.setdefault(own, []).append(pos)
    dropped = set()
    out = list(groups)
    for own, members in merged.items():
        if len(members) == 1:
            continue
        first = gap_rows[own]
        rows = [r for pos in members for r in groups[gap_rows[pos]][1].members]
        logits = evidence.per_query().logit  # recomputed: cheap next to the rest, keeps this function pure
        piece = summarize(rows)
        piece.cluster_id = groups[first][0].cluster_id
        mean = float(np.mean(logits[rows]))
        decision = Decision(
            members=rows,
            logit=mean,
            coverage=sigmoid(mean),
            has_gap=True,
            evidence={"merged": [groups[gap_rows[pos]][0].cluster_id for pos in members[1:]]},
        )
        out[first] = (piece, decision)
        dropped.update(gap_rows[pos] for pos in members[1:])
    return [g for i, g in enumerate(out) if i not in dropped]
