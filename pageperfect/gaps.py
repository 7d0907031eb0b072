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
from typing import Protocol

import numpy as np

from pageperfect.clustering import Cluster
from pageperfect.embeddings import content_stems


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

      bump(p) = L(1.5 * (p - 3.5)) * L(-0.25 * (p - 22)) / peak,  L(x) = 1 / (1 + e^-x)
      impression_factor(i) = min(1, log10(i + 1) / 6)

    The bump is ~1 for positions 5 to 16, still above 0.5 from 4 to 22, small at
    the top (position 1: 0.02, position 3: 0.3) where there is little left to gain,
    and fades past 30 (0.12; 50: 0.001) where a page would need more than an edit.
    The impression factor is logarithmic and reaches 1 at a million impressions,
    so it does not depend on the other queries of the job.
    """
    bump = _position_bump(position) / _BUMP_PEAK
    impression_factor = min(1.0, math.log10(max(impressions, 0.0) + 1.0) / math.log10(IMPRESSIONS_SATURATION))
    return min(1.0, bump) * impression_factor


SCORES: dict[str, Callable[[float, float], float]] = {"striking": striking_score, "legacy": legacy_score}
SIMILARITIES = ("cosine", "lexical")


class SegmentLike(Protocol):
    segment_id: str
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


@dataclass
class GapReport:
    gaps: list[Gap]  # every cluster: gaps first, then covered ones, each by opportunity descending
    coverage_score: float
    threshold: float
    score: str


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


def cosine_similarities(clusters: Sequence[Cluster], segment_embeddings: np.ndarray) -> np.ndarray:
    """(clusters, segments) cosines of the centroids with the segment embeddings, in one float32 product."""
    centroids = np.stack([np.asarray(c.centroid, dtype=np.float32) for c in clusters])
    seg = np.asarray(segment_embeddings, dtype=np.float32)
    if centroids.shape[1] != seg.shape[1]:
        raise ValueError(f"cluster centroids have {centroids.shape[1]} dims, segments {seg.shape[1]}")
    norms = np.linalg.norm(seg, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return centroids @ (seg / norms).T


def segment_words(segment: SegmentLike) -> str:
    """A segment's text for word matching: its headings, then its text."""
    return " ".join([*segment.heading_path, segment.text])


def lexical_similarities(clusters: Sequence[Cluster], segments: Sequence[SegmentLike]) -> np.ndarray:
    """(clusters, segments) word coverage: per query, the share of its content stems the segment contains, averaged over the cluster's queries.

    Queries without content words (only stop words) are left out of the average;
    a cluster of only such queries scores 0.
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    queries = [q for c in clusters for q in c.keywords]
    owner = np.repeat(np.arange(len(clusters)), [len(c.keywords) for c in clusters])
    vectorizer = CountVectorizer(analyzer=content_stems, binary=True, dtype=np.float32)
    try:
        vectorizer.fit([segment_words(s) for s in segments] + queries)
    except ValueError:  # no content word anywhere: nothing can match
        return np.zeros((len(clusters), len(segments)), dtype=np.float32)
    words = vectorizer.transform(queries)  # queries x vocabulary, 0/1
    per_query = words.sum(axis=1).A1
    has_words = per_query > 0
    words = sparse.diags(np.where(has_words, 1.0 / np.maximum(per_query, 1), 0.0).astype(np.float32)) @ words
    counted = np.bincount(owner[has_words], minlength=len(clusters)).astype(np.float32)
    mean = sparse.csr_matrix(
        (np.where(has_words, 1.0 / np.maximum(counted[owner], 1), 0.0).astype(np.float32), (owner, np.arange(len(queries)))),
        shape=(len(clusters), len(queries)),
    )
    present = vectorizer.transform([segment_words(s) for s in segments])  # segments x vocabulary, 0/1
    return np.asarray(((mean @ words) @ present.T).todense(), dtype=np.float32)


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

    A page without segments covers nothing: every cluster is a gap.
    segment_embeddings are only read by the cosine similarity.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; known: {sorted(SCORES)}")
    if similarity not in SIMILARITIES:
        raise ValueError(f"unknown similarity {similarity!r}; known: {list(SIMILARITIES)}")
    if similarity == "cosine" and len(segments) != len(segment_embeddings):
        raise ValueError(f"{len(segments)} segments but {len(segment_embeddings)} segment embeddings")
    scorer = SCORES[score]
    similarities = np.zeros((len(clusters), 0), dtype=np.float32)
    if clusters and len(segments):
        if similarity == "cosine":
            similarities = cosine_similarities(clusters, segment_embeddings)
        else:
            similarities = lexical_similarities(clusters, segments)

    gaps: list[Gap] = []
    for row, cluster in enumerate(clusters):
        order = np.argsort(-similarities[row], kind="stable")[:top_k]
        matches = [
            SegmentMatch(
                segment_id=segments[j].segment_id,
                heading_path=list(segments[j].heading_path),
                text=segments[j].text,
                similarity=float(similarities[row, j]),
            )
            for j in order
        ]
        best = matches[0] if matches else None
        gaps.append(
            Gap(
                cluster_id=cluster.cluster_id,
                representative=cluster.representative,
                keywords=list(cluster.keywords),
                total_impressions=cluster.total_impressions,
                avg_position=cluster.avg_position,
                has_gap=best is None or best.similarity < threshold,
                opportunity_score=float(scorer(cluster.avg_position, cluster.total_impressions)),
                best_match=best,
                top_matches=matches,
            )
        )
    coverage_score = coverage(clusters, [not g.has_gap for g in gaps])
    gaps.sort(key=lambda g: (not g.has_gap, -g.opportunity_score, g.cluster_id))
    return GapReport(gaps=gaps, coverage_score=coverage_score, threshold=threshold, score=score)
