"""Across a site: which pages compete for one search intent, and which page's gap another page answers.

Inputs are what the page analyses stored, page by page (`SitePage`): each page's queries with
their impressions, clicks and positions and their vectors, its final query groups (the gap rows:
members, coverage decision, opportunity, the passage that best answers it) and its passages with
their vectors. No database, no Temporal; CPU-bound.

Site intents. Every page's groups are points in the one embedding space (the group's centroid,
the unit mean of its queries' vectors). Two groups of different pages belong to one site intent
when their centroids have cosine >= `intent_cosine` (INTENT_COSINE = 0.8 for all-MiniLM-L6-v2: on
the fixture site and the demo page, paraphrases of one question score 0.8-0.95 while questions
that share the subject words but ask something else, "cold brew ratio" / "cold brew caffeine",
score 0.45-0.75). The close pairs are found in row blocks of bounded size
(`clustering.radius_graph`, or its cell-probing approximation for more than APPROXIMATE_ABOVE
groups), never as an all-pairs matrix, and joined into intents as connected components (scipy).

Cannibalization. A site intent where two or more pages earn impressions is a case. Each page's
share of the intent's impressions and clicks, its impression-weighted position, and whether the
pages' covering passages say the same thing (cosine of the passages' vectors >= SAME_PASSAGE).

    severity = total impressions x evenness,  evenness = H(shares) / log(pages)  (normalised entropy)

so a 50/50 split of 10,000 impressions weighs 10,000 and a 95/5 split of it about 2,900. The
recommendation, with its reasons:

- `leave_alone` when the pages other than the leader earn less than SMALL_SPLIT of the
  impressions (little at stake), or when the intents differ: the pages share no query and their
  passages say different things (cosine < DIFFERENT_PASSAGE);
- `consolidate` (merge into the leader and redirect) when the passages say the same thing and the
  intent is at least CORE_SHARE of the weaker page's own impressions (the page is about it);
- `differentiate` the weaker page otherwise (its passage on the intent points to the leader).

Links instead of duplicate sections. For each gap of a page, the other pages whose passages come
nearest the gap's centroid (LINK_CANDIDATES pages, found in blocks) are checked with the page
analysis' own coverage decision (`gaps.analyze_evidence` with `coverage.Evidence`, the page's
queries, vectors and subject against the other page's passages): where it decides "covered", the
result proposes a link to that page's passage instead of a new section, and the gap's score is
multiplied by LINK_FACTOR = 0.25 (the fix is a link, an edit of a sentence, and the intent's
answer already ranks on the site; a quarter keeps it on the list below the gaps that need text).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from pageperfect.analysis.clustering import Cluster, radius_graph
from pageperfect.analysis.coverage import CoverageModel, Evidence, Passage
from pageperfect.analysis.intents import NEIGHBORS

INTENT_COSINE = 0.8
SAME_PASSAGE = 0.8
DIFFERENT_PASSAGE = 0.5
SMALL_SPLIT = 0.1
CORE_SHARE = 0.5
LINK_FACTOR = 0.25
LINK_CANDIDATES = 3
LINK_MIN_COSINE = 0.3  # a page whose nearest passage is farther from the gap is not checked
APPROXIMATE_ABOVE = 50_000  # groups; beyond this the close pairs come from probing nearby cells
BLOCK_CELLS = 2**22  # gap x passage similarities computed at once (16 MB of float32)


@dataclass
class PageGroup:
    """One of a page's final query groups (a row of its gap report)."""

    cluster_id: int
    representative: str
    members: list[int]  # rows into the page's queries
    has_gap: bool
    coverage: float | None
    opportunity_score: float
    segment_id: str | None = None  # the page's passage that best answers it


@dataclass
class SitePage:
    url: str
    job_id: str
    queries: list[str]
    impressions: np.ndarray
    clicks: np.ndarray
    positions: np.ndarray
    query_vectors: np.ndarray  # (queries, dims)
    stripped_vectors: np.ndarray  # the queries without the page's subject words, (queries, dims)
    subject: frozenset[str]
    groups: list[PageGroup]
    passages: list[Passage]  # coverage.passages_of(segments, model.passages)
    passage_vectors: np.ndarray  # (passages, dims)
    coverage_score: float | None = None


@dataclass
class SiteResult:
    pages: list[dict]
    cannibalization: list[dict]
    links: list[dict]
    intents: list[dict]  # the site intents more than one page earns impressions for, by impressions
    stats: dict = field(default_factory=dict)


def site_page(
    url: str,
    job_id: str,
    rows: Sequence,
    query_vectors: np.ndarray,
    stripped_vectors: np.ndarray,
    subject: frozenset[str],
    gaps: Sequence,
    passages: list[Passage],
    passage_vectors: np.ndarray,
    coverage_score: float | None = None,
) -> SitePage:
    """A SitePage from what a page analysis made: its keyword rows (query, clicks, impressions, position) in the
    order of the vectors, and its gap report's rows (gaps.Gap, or rows with the same fields)."""
    index = {r.query: i for i, r in enumerate(rows)}
    groups = []
    for gap in gaps:
        best = _field(gap, "best_match")
        segment_id = (
            (best.get("segment_id") if isinstance(best, dict) else getattr(best, "segment_id", None)) if best else None
        )
        groups.append(
            PageGroup(
                cluster_id=int(_field(gap, "cluster_id")),
                representative=_field(gap, "representative"),
                members=[index[q] for q in _field(gap, "keywords") if q in index],
                has_gap=bool(_field(gap, "has_gap")),
                coverage=_field(gap, "coverage"),
                opportunity_score=float(_field(gap, "opportunity_score")),
                segment_id=segment_id,
            )
        )
    return SitePage(
        url=url,
        job_id=job_id,
        queries=[r.query for r in rows],
        impressions=np.array([r.impressions for r in rows], dtype=np.float64),
        clicks=np.array([r.clicks for r in rows], dtype=np.float64),
        positions=np.array([r.position for r in rows], dtype=np.float64),
        query_vectors=np.asarray(query_vectors, dtype=np.float32),
        stripped_vectors=np.asarray(stripped_vectors, dtype=np.float32),
        subject=frozenset(subject),
        groups=[g for g in groups if g.members],
        passages=list(passages),
        passage_vectors=np.asarray(passage_vectors, dtype=np.float32),
        coverage_score=coverage_score,
    )


def _field(row, name: str):
    return row[name] if isinstance(row, dict) or hasattr(row, "keys") else getattr(row, name)


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def group_centroids(page: SitePage) -> np.ndarray:
    """(groups, dims) unit means of each group's query vectors."""
    vectors = _unit(page.query_vectors)
    out = np.zeros((len(page.groups), vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    for row, group in enumerate(page.groups):
        if group.members:
            out[row] = vectors[group.members].mean(axis=0)
    return _unit(out)


def site_intents(
    centroids: np.ndarray, owners: np.ndarray, *, intent_cosine: float = INTENT_COSINE, approximate: bool | None = None
) -> np.ndarray:
    """One intent label per group: groups of different pages closer than intent_cosine, joined transitively."""
    n = len(owners)
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    approximate = n > APPROXIMATE_ABOVE if approximate is None else approximate
    eps = 1.0 - intent_cosine
    if approximate:
        from pageperfect.analysis.clustering import _approximate_pairs, _prepared

        unit, nonzero = _prepared(centroids)
        left, right = _approximate_pairs(centroids, unit, nonzero, eps, 64 * 2**20)
    else:
        coo = radius_graph(centroids, eps).tocoo()
        left, right = coo.row, coo.col
    across = owners[left] != owners[right]  # a page's own groups were told apart by its own analysis
    left, right = left[across], right[across]
    graph = sparse.coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _entropy_evenness(shares: np.ndarray) -> float:
    shares = shares[shares > 0]
    if len(shares) < 2:
        return 0.0
    return float(-(shares * np.log(shares)).sum() / math.log(len(shares)))


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na and nb else None


def _passage_vector(page: SitePage, segment_id: str | None) -> tuple[np.ndarray | None, Passage | None]:
    """The covering passage's section: the segment, or when it is a heading, the text under that heading
    (the mean of its segments' vectors), so that two pages' passages are compared on what they say."""
    if segment_id is None:
        return None, None
    found = next((p for p in page.passages if p.segment_id == segment_id and p.kind == "segment"), None)
    if found is None:
        return None, None
    section = [
        (p, v)
        for p, v in zip(page.passages, page.passage_vectors)
        if p.kind == "segment"
        and p.heading_path == found.heading_path
        and not (p.heading_path and p.text == p.heading_path[-1])
    ]
    if not section:
        section = [(p, v) for p, v in zip(page.passages, page.passage_vectors) if p is found]
    vector = np.mean(np.stack([np.asarray(v, dtype=np.float32) for _, v in section]), axis=0)
    text = " ".join(p.text for p, _ in section)
    return vector, Passage(segment_id, list(found.heading_path), text, "segment")


def _case(intent: int, members: list[tuple[int, int]], pages: Sequence[SitePage]) -> dict | None:
    """The cannibalization case of one site intent (members: (page, group) pairs), or None."""
    by_page: dict[int, list[int]] = {}
    for p, g in members:
        by_page.setdefault(p, []).append(g)
    rows = []
    for p, groups in by_page.items():
        page = pages[p]
        idx = sorted({i for g in groups for i in page.groups[g].members})
        impressions = float(page.impressions[idx].sum())
        clicks = float(page.clicks[idx].sum())
        weights = page.impressions[idx]
        position = (
            float((page.positions[idx] * weights).sum() / weights.sum())
            if weights.sum() > 0
            else float(page.positions[idx].mean())
        )
        best = max(groups, key=lambda g: float(page.impressions[page.groups[g].members].sum()))
        covered = [g for g in groups if not page.groups[g].has_gap]
        segment = (
            page.groups[max(covered, key=lambda g: page.groups[g].coverage or 0.0)].segment_id if covered else None
        )
        rows.append(
            {
                "page": p,
                "url": page.url,
                "job_id": page.job_id,
                "impressions": impressions,
                "clicks": clicks,
                "position": round(position, 2),
                "queries": [page.queries[i] for i in idx],
                "page_impressions": float(page.impressions.sum()),
                "segment_id": segment,
                "cluster_id": page.groups[best].cluster_id,
            }
        )
    earning = [r for r in rows if r["impressions"] > 0]
    if len(earning) < 2:
        return None
    total = sum(r["impressions"] for r in earning)
    total_clicks = sum(r["clicks"] for r in earning)
    earning.sort(key=lambda r: (-r["impressions"], r["url"]))
    for r in earning:
        r["impression_share"] = round(r["impressions"] / total, 4)
        r["click_share"] = round(r["clicks"] / total_clicks, 4) if total_clicks > 0 else None
    shares = np.array([r["impressions"] / total for r in earning])
    evenness = _entropy_evenness(shares)
    leader, rest = earning[0], earning[1:]
    leader_vec, leader_passage = _passage_vector(pages[leader["page"]], leader["segment_id"])
    passages = []
    for r in earning:
        vec, passage = _passage_vector(pages[r["page"]], r["segment_id"])
        r["passage"] = (
            {"segment_id": passage.segment_id, "heading_path": passage.heading_path, "text": passage.text[:400]}
            if passage
            else None
        )
        similarity = None if r is leader else _cosine(leader_vec, vec)
        r["passage_cosine"] = round(similarity, 4) if similarity is not None else None
        passages.append(similarity)
    weaker = rest[0]
    shared = set(leader["queries"]) & {q for r in rest for q in r["queries"]}
    minor = 1.0 - float(shares[0])
    reasons: list[str] = []
    same = weaker["passage_cosine"]
    if minor < SMALL_SPLIT:
        recommendation = "leave_alone"
        reasons.append(
            f"{leader['url']} earns {shares[0]:.0%} of the intent's impressions; the others "
            f"{minor:.0%} (under {SMALL_SPLIT:.0%}): little is split"
        )
    elif not shared and same is not None and same < DIFFERENT_PASSAGE:
        recommendation = "leave_alone"
        reasons.append(
            f"the intents differ: no query in common and the covering passages say different things "
            f"(cosine {same:.2f} < {DIFFERENT_PASSAGE})"
        )
    else:
        core = weaker["impressions"] / weaker["page_impressions"] if weaker["page_impressions"] else 0.0
        reasons.append(
            f"{len(earning)} pages split {total:,.0f} impressions: "
            + ", ".join(f"{r['url']} {r['impression_share']:.0%}" for r in earning)
        )
        if shared:
            reasons.append(f"{len(shared)} queries bring up both pages: " + ", ".join(sorted(shared)[:5]))
        if same is not None and same >= SAME_PASSAGE and core >= CORE_SHARE:
            recommendation = "consolidate"
            reasons.append(
                f"the covering passages say the same thing (cosine {same:.2f} >= {SAME_PASSAGE}) and "
                f"the intent is {core:.0%} of {weaker['url']}'s impressions: merge it into "
                f"{leader['url']} and redirect"
            )
        else:
            recommendation = "differentiate"
            if same is None:
                reasons.append(f"{weaker['url']} has no passage that answers the intent")
            elif same >= SAME_PASSAGE:
                reasons.append(
                    f"the passages say the same thing (cosine {same:.2f}) but the intent is only "
                    f"{core:.0%} of {weaker['url']}'s impressions: keep the page, cut the duplicate "
                    f"passage and link to {leader['url']}"
                )
            else:
                reasons.append(
                    f"the passages differ (cosine {same:.2f}): make {weaker['url']} answer its own "
                    f"angle and link to {leader['url']} for the shared question"
                )
    queries = sorted(
        {q for r in earning for q in r["queries"]},
        key=lambda q: (
            -sum(
                float(pages[r["page"]].impressions[pages[r["page"]].queries.index(q)])
                for r in earning
                if q in r["queries"]
            )
        ),
    )
    return {
        "intent": queries[0] if queries else "",
        "intent_id": int(intent),
        "queries": queries,
        "pages": [
            {
                k: r[k]
                for k in (
                    "url",
                    "job_id",
                    "impressions",
                    "clicks",
                    "position",
                    "impression_share",
                    "click_share",
                    "queries",
                    "passage",
                    "passage_cosine",
                    "cluster_id",
                )
            }
            for r in earning
        ],
        "total_impressions": total,
        "evenness": round(evenness, 4),
        "severity": round(total * evenness, 2),
        "recommendation": recommendation,
        "reasons": reasons,
    }


def _link_candidates(
    pages: Sequence[SitePage], gaps: list[tuple[int, int]], centroids: list[np.ndarray], top: int
) -> dict[tuple[int, int], list[int]]:
    """For each gap (page, group), the other pages whose segments come nearest its centroid, best first."""
    rows, owners = [], []
    for p, page in enumerate(pages):
        for passage, vector in zip(page.passages, page.passage_vectors):
            if passage.kind == "segment":
                rows.append(vector)
                owners.append(p)
    out: dict[tuple[int, int], list[int]] = {}
    if not rows or not gaps:
        return out
    segs = _unit(np.stack(rows))
    seg_owner = np.asarray(owners)
    points = _unit(np.stack([centroids[p][g] for p, g in gaps]))
    gap_owner = np.asarray([p for p, _ in gaps])
    n_pages = len(pages)
    order = np.argsort(seg_owner, kind="stable")  # segments grouped by page, for one maximum per page
    bounds = np.searchsorted(seg_owner[order], np.arange(n_pages + 1))
    nonempty = bounds[:-1] < bounds[1:]
    starts, with_segments = bounds[:-1][nonempty], np.flatnonzero(nonempty)
    segs = segs[order]
    seg_owner = seg_owner[order]
    k = min(top, n_pages)
    step = max(1, BLOCK_CELLS // len(segs))
    for start in range(0, len(gaps), step):
        block = points[start : start + step] @ segs.T
        block[gap_owner[start : start + step, None] == seg_owner[None, :]] = -np.inf  # not the page itself
        best = np.full((block.shape[0], n_pages), -np.inf, dtype=np.float32)
        best[:, with_segments] = np.maximum.reduceat(block, starts, axis=1)  # each page's nearest segment
        nearest = np.argpartition(-best, k - 1, axis=1)[:, :k]
        for r in range(best.shape[0]):
            chosen = sorted(nearest[r].tolist(), key=lambda p: (-best[r, p], p))
            out[gaps[start + r]] = [p for p in chosen if best[r, p] >= LINK_MIN_COSINE]
    return out


def _to_cluster(page: SitePage, group: PageGroup, centroid: np.ndarray) -> Cluster:
    idx = group.members
    weights = page.impressions[idx]
    total = float(weights.sum())
    return Cluster(
        cluster_id=group.cluster_id,
        representative=group.representative,
        keywords=[page.queries[i] for i in idx],
        member_indices=list(idx),
        size=len(idx),
        total_impressions=total,
        avg_impressions=total / max(1, len(idx)),
        total_clicks=float(page.clicks[idx].sum()),
        avg_position=(
            float((page.positions[idx] * weights).sum() / total) if total > 0 else float(page.positions[idx].mean())
        ),
        centroid=centroid,
    )


def _members_of(page: SitePage, keywords: Sequence[str]) -> list[int]:
    index = {q: i for i, q in enumerate(page.queries)}
    return [index[q] for q in keywords if q in index]


def _summarized(page: SitePage, rows: Sequence[int]) -> Cluster:
    from pageperfect.analysis.clustering import summarize_members
    from pageperfect.models import KeywordRow

    keyword_rows = [
        KeywordRow.model_construct(
            query=page.queries[i],
            clicks=float(page.clicks[i]),
            impressions=float(page.impressions[i]),
            ctr=0.0,
            position=float(page.positions[i]),
        )
        for i in range(len(page.queries))
    ]
    return summarize_members(keyword_rows, page.query_vectors, rows)


def _links(
    pages: Sequence[SitePage], centroids: list[np.ndarray], model: CoverageModel, score: str, analyze: Callable
) -> list[dict]:
    gaps = [(p, g) for p, page in enumerate(pages) for g, group in enumerate(page.groups) if group.has_gap]
    candidates = _link_candidates(pages, gaps, centroids, LINK_CANDIDATES)
    by_pair: dict[tuple[int, int], list[int]] = {}
    for (p, g), others in candidates.items():
        for other in others:
            by_pair.setdefault((p, other), []).append(g)
    best: dict[tuple[int, int], dict] = {}
    targets_of: dict[int, list[int]] = {}
    for p, other in sorted(by_pair):
        if pages[other].passages:
            targets_of.setdefault(p, []).append(other)
    for p, targets in targets_of.items():
        page = pages[p]
        # One Evidence of the page's queries against every candidate page's passages; each page's own part of it.
        columns, offset = {}, 0
        for other in targets:
            columns[other] = range(offset, offset + len(pages[other].passages))
            offset += len(pages[other].passages)
        everything = Evidence(
            page.queries,
            page.query_vectors,
            page.stripped_vectors,
            page.subject,
            [x for other in targets for x in pages[other].passages],
            np.concatenate([pages[other].passage_vectors for other in targets]),
            model,
        )
        for other in targets:
            _check_pair(
                page,
                p,
                other,
                by_pair[(p, other)],
                everything.restricted(columns[other]),
                centroids,
                score,
                analyze,
                best,
            )
    return _link_rows(pages, best)


def _check_pair(
    page: SitePage,
    p: int,
    other: int,
    groups: list[int],
    evidence: Evidence,
    centroids: list[np.ndarray],
    score: str,
    analyze: Callable,
    best: dict,
) -> None:
    """The page's gaps `groups` decided against the other page's passages; a covered one is kept in `best`."""
    clusters = [_to_cluster(page, page.groups[g], centroids[p][g]) for g in groups]
    owner = {i: g for g in groups for i in page.groups[g].members}
    report = analyze(
        clusters, page.impressions, evidence, score=score, summarize=lambda rows, page=page: _summarized(page, rows)
    )
    for decided in report.gaps:
        # A gap whose queries the other page answers only in part is split by the decision: the covered part.
        rows = [owner[i] for i in _members_of(page, decided.keywords) if i in owner]
        if not rows or decided.has_gap or decided.best_match is None:
            continue
        g = max(set(rows), key=rows.count)
        found = {
            "to_page": other,
            "coverage": decided.coverage or 0.0,
            "match": decided.best_match,
            "explanation": decided.explanation,
        }
        if (p, g) not in best or found["coverage"] > best[(p, g)]["coverage"]:
            best[(p, g)] = found


def _link_rows(pages: Sequence[SitePage], best: dict) -> list[dict]:
    links = []
    for (p, g), found in sorted(best.items()):
        page, group, target = pages[p], pages[p].groups[g], pages[found["to_page"]]
        match = found["match"]
        heading = match.heading_path[-1] if match.heading_path else ""
        _, section = _passage_vector(target, match.segment_id)  # a heading's match: the text under it
        links.append(
            {
                "from_url": page.url,
                "from_job_id": page.job_id,
                "cluster_id": group.cluster_id,
                "intent": group.representative,
                "queries": [page.queries[i] for i in group.members],
                "to_url": target.url,
                "to_job_id": target.job_id,
                "to_segment_id": match.segment_id,
                "anchor_text": heading or group.representative,
                "passage": (section.text if section else match.text)[:400],
                "coverage": round(found["coverage"], 4),
                "original_score": round(group.opportunity_score, 6),
                "score": round(group.opportunity_score * LINK_FACTOR, 6),
                "reason": (
                    f'{target.url} already answers "{group.representative}" (coverage '
                    f"{found['coverage']:.2f} by the page analysis' own decision): link to its passage "
                    f'"{heading or match.text[:60]}" instead of writing a second section'
                ),
                "brief": link_brief(page, group, target.url, match.segment_id, heading or group.representative),
            }
        )
    return links


def link_brief(page: SitePage, group: PageGroup, to_url: str, to_segment_id: str, anchor_text: str) -> str:
    """The brief for a gap another page of the site answers: a link from the page's nearest passage
    (where its own gap analysis would have put a new section) to that page's passage, not a new section."""
    own = next((p for p in page.passages if p.segment_id == group.segment_id and p.kind == "segment"), None)
    place = f'in the passage under "{" › ".join(own.heading_path)}"' if own and own.heading_path else "in the page"
    return (
        f'Do not add a section on "{group.representative}": {to_url} answers it already. '
        f'{place[0].upper()}{place[1:]}, link the words "{anchor_text}" to {to_url}#{to_segment_id} '
        "(its passage that answers these queries), in a sentence that says what the reader finds there."
    )


def analyze_site(
    pages: Sequence[SitePage],
    model: CoverageModel,
    *,
    score: str = "striking",
    intent_cosine: float = INTENT_COSINE,
    top_gaps: int = 5,
    neighbors: int = NEIGHBORS,
) -> SiteResult:
    """The site's cannibalization cases, link suggestions and pages ranked by opportunity. CPU-bound.

    neighbors: links per query and view of the query graph that decides whether a page's gap splits into parts
    another page answers and parts it does not (gaps.analyze_evidence).

    BLAS runs on one thread: the products are many and small (a page's queries against another page's
    passages), where threads cost more than they give, and the worker's other activities keep a core."""
    from pageperfect.analysis.clustering import _blas_limits

    with _blas_limits(1):
        return _analyze_site(
            pages, model, score=score, intent_cosine=intent_cosine, top_gaps=top_gaps, neighbors=neighbors
        )


def _analyze_site(
    pages: Sequence[SitePage],
    model: CoverageModel,
    *,
    score: str,
    intent_cosine: float,
    top_gaps: int,
    neighbors: int,
) -> SiteResult:
    from pageperfect.analysis.gaps import analyze_evidence

    centroids = [group_centroids(p) for p in pages]
    owners = np.asarray([p for p, page in enumerate(pages) for _ in page.groups], dtype=np.intp)
    index = [(p, g) for p, page in enumerate(pages) for g in range(len(page.groups))]
    stacked = (
        np.concatenate([c for c in centroids if len(c)])
        if any(len(c) for c in centroids)
        else np.zeros((0, 1), np.float32)
    )
    labels = site_intents(stacked, owners, intent_cosine=intent_cosine)
    members: dict[int, list[tuple[int, int]]] = {}
    for label, pg in zip(labels.tolist(), index):
        members.setdefault(label, []).append(pg)
    cases, intents = [], []
    for label, pairs in members.items():
        if len({p for p, _ in pairs}) < 2:
            continue
        case = _case(label, pairs, pages)
        if case is None:
            continue
        cases.append(case)
        intents.append(
            {
                "intent_id": case["intent_id"],
                "intent": case["intent"],
                "pages": {r["url"]: r["impressions"] for r in case["pages"]},
            }
        )
    cases.sort(key=lambda c: (-c["severity"], c["intent"]))
    intents.sort(key=lambda i: -sum(i["pages"].values()))
    links = _links(pages, centroids, model, score, partial(analyze_evidence, neighbors=neighbors))
    linked = {(link["from_url"], link["cluster_id"]): link for link in links}
    in_case = {(r["url"], r["cluster_id"]) for c in cases for r in c["pages"]}
    ranked = []
    for page in pages:
        gaps = []
        for group in page.groups:
            if not group.has_gap:
                continue
            link = linked.get((page.url, group.cluster_id))
            gaps.append(
                {
                    "cluster_id": group.cluster_id,
                    "representative": group.representative,
                    "queries": [page.queries[i] for i in group.members][:10],
                    "impressions": float(page.impressions[group.members].sum()),
                    "coverage": group.coverage,
                    "original_score": round(group.opportunity_score, 6),
                    "score": round(link["score"] if link else group.opportunity_score, 6),
                    "fix": "link" if link else "section",
                    "link": {
                        "to_url": link["to_url"],
                        "to_segment_id": link["to_segment_id"],
                        "anchor_text": link["anchor_text"],
                        "brief": link["brief"],
                    }
                    if link
                    else None,
                    "cannibalized": (page.url, group.cluster_id) in in_case,
                }
            )
        gaps.sort(key=lambda x: (-x["score"], x["cluster_id"]))
        ranked.append(
            {
                "url": page.url,
                "job_id": page.job_id,
                "coverage": page.coverage_score,
                "queries": len(page.queries),
                "impressions": float(page.impressions.sum()),
                "gaps": len(gaps),
                "opportunity": round(sum(x["score"] for x in gaps), 6),
                "top_gaps": gaps[:top_gaps],
            }
        )
    ranked.sort(key=lambda r: (-r["opportunity"], r["url"]))
    stats = {
        "pages": len(pages),
        "queries": sum(len(p.queries) for p in pages),
        "groups": len(index),
        "site_intents": len(members),
        "cases": len(cases),
        "links": len(links),
        "intent_cosine": intent_cosine,
        "link_factor": LINK_FACTOR,
    }
    return SiteResult(pages=ranked, cannibalization=cases, links=links, intents=intents, stats=stats)
