"""Groups a page's search queries into search intents.

Queries that ask the same thing in other words ("is fiddle leaf fig toxic to
cats", "fiddle leaf fig safe for cats") should form one group, and queries that
only share the page's subject ("fiddle leaf fig brown spots", "fiddle leaf fig
propagation") should not. Three views of the queries vote on who is close to whom:

- the semantic embedding of each query as asked;
- the semantic embedding of each query with the page's subject words taken out
  ("is toxic to cats"), so the subject that every query shares stops pulling them
  together;
- the query's distinctive words (stemmed, subject left out, weighted by rarity
  among the page's queries, tf-idf cosine).

Each view links every query to its `neighbors` nearest queries (a k-nearest-
neighbour graph, weighted by similarity); the three graphs are summed and the
communities of the sum are found with the Louvain method (networkx), which needs
no distance threshold: a community is a group whose queries are more linked to
each other than the graph's overall density predicts, so a dense page and a
sparse one are grouped alike. `resolution` above 1 favours smaller groups.

Links weaker than `MIN_LINK` are dropped, so a query that resembles nothing stays
alone instead of being pushed into the nearest group.

Measured on the labelled pages (docs/CALIBRATION.md): on real articles this
halves the clusters per topic of DBSCAN on the same vectors at a higher
adjusted Rand index.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

from pageperfect.analysis.embeddings import _stop_words, content_stems, light_stem

# A stem in at least this share of the page's queries is the page's subject.
SUBJECT_SHARE = 0.25
# A page needs this many queries before a shared word counts as its subject.
SUBJECT_MIN_QUERIES = 8
NEIGHBORS = 5
RESOLUTION = 1.5
MIN_LINK = 0.2  # cosine below which two queries are not linked in any view
LARGEST_INTENT = 20  # a community with more queries is looked at again on its own (refine)
MAX_SPLIT_CONDUCTANCE = 0.3  # ... and split when at most this share of its parts' links cross the cut
BLOCK_ROWS = 2048  # rows of the similarity matrix computed at once

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


def subject_stems(queries: Sequence[str], *, min_share: float = SUBJECT_SHARE) -> frozenset[str]:
    """The stems that at least `min_share` of the queries contain: what the page is about, not which
    aspect a query asks for ("fiddl", "leaf", "fig" on a fiddle-leaf-fig page)."""
    if len(queries) < SUBJECT_MIN_QUERIES:
        return frozenset()
    counts = Counter(stem for q in queries for stem in set(content_stems(q)))
    return frozenset(stem for stem, n in counts.items() if n >= min_share * len(queries))


def strip_subject(query: str, subject: Iterable[str]) -> str:
    """The query without the words whose stem is in `subject`; the query itself when nothing of
    its own would be left (a query that is only the subject asks about the subject)."""
    subject = frozenset(subject)
    if not subject:
        return query
    stop = _stop_words()
    kept = [w for w in _WORD_RE.findall(query) if light_stem(w.lower()) not in subject or w.lower() in stop]
    if not any(w.lower() not in stop for w in kept):
        return query
    return " ".join(kept)


def distinctive_stems(query: str, subject: Iterable[str]) -> list[str]:
    """The query's content stems that are not the page's subject, in order, each once."""
    subject = frozenset(subject)
    return [s for s in dict.fromkeys(content_stems(query)) if s not in subject]


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def _lexical_rows(queries: Sequence[str], subject: frozenset[str]) -> sparse.csr_matrix:
    """tf-idf rows (binary tf, smoothed idf, L2-normalised) of each query's distinctive stems."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=lambda q: distinctive_stems(q, subject), binary=True, dtype=np.float32)
    try:
        return vectorizer.fit_transform(list(queries)).tocsr()
    except ValueError:  # no distinctive word in any query
        return sparse.csr_matrix((len(queries), 1), dtype=np.float32)


def _top_links(rows_of: callable, n: int, k: int, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, similarity) of each row's k most similar other rows with similarity >= floor.

    rows_of(start, stop) returns the dense (stop - start, n) similarity block."""
    left, right, weight = [], [], []
    k = min(k, n - 1)
    if k <= 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0, dtype=np.float32)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        block = np.array(rows_of(start, stop), dtype=np.float32)
        block[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not its own neighbour
        # Ties broken by index, so the graph does not depend on the sort's whims.
        nearest = np.argsort(-block, axis=1, kind="stable")[:, :k]
        values = np.take_along_axis(block, nearest, axis=1)
        keep = values >= floor
        rows = np.repeat(np.arange(start, stop), k).reshape(-1, k)
        left.append(rows[keep])
        right.append(nearest[keep])
        weight.append(values[keep])
    return np.concatenate(left), np.concatenate(right), np.concatenate(weight)


def link_graph(
    queries: Sequence[str],
    vectors: np.ndarray,
    stripped_vectors: np.ndarray,
    subject: frozenset[str],
    *,
    neighbors: int = NEIGHBORS,
    min_link: float = MIN_LINK,
) -> sparse.csr_matrix:
    """The symmetric (n, n) sum of the three views' k-nearest-neighbour graphs."""
    n = len(queries)
    graph = sparse.csr_matrix((n, n), dtype=np.float64)
    if n < 2:
        return graph
    dense_views = [_unit(vectors), _unit(stripped_vectors)]
    lexical = _lexical_rows(queries, subject)
    lexical_t = lexical.T.tocsc()
    views = [(lambda a, b, u=u: u[a:b] @ u.T) for u in dense_views]
    views.append(lambda a, b: (lexical[a:b] @ lexical_t).toarray())
    for rows_of in views:
        i, j, w = _top_links(rows_of, n, neighbors, min_link)
        view = sparse.coo_matrix((w.astype(np.float64), (i, j)), shape=(n, n)).tocsr()
        graph = graph + view + view.T  # a pair that chose each other counts twice
    return graph.tocsr()


def communities(graph: sparse.csr_matrix, *, resolution: float = RESOLUTION, seed: int = 0) -> np.ndarray:
    """Louvain communities of a weighted undirected graph as labels 0..k-1 (numbered by lowest member);
    a node without links is its own community. Deterministic for a given graph and seed."""
    import networkx as nx

    n = graph.shape[0]
    coo = sparse.triu(graph, k=1).tocoo()
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()))
    groups = nx.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed)
    labels = np.empty(n, dtype=np.intp)
    for number, members in enumerate(sorted(groups, key=min)):
        labels[list(members)] = number
    return labels


def intent_labels(
    queries: Sequence[str],
    vectors: np.ndarray,
    stripped_vectors: np.ndarray,
    subject: frozenset[str],
    *,
    neighbors: int = NEIGHBORS,
    resolution: float = RESOLUTION,
    min_link: float = MIN_LINK,
    largest: int = 0,
) -> np.ndarray:
    """One label per query; queries with the same label ask for the same thing. CPU-bound.

    largest: communities bigger than this are split again (refine); 0 means LARGEST_INTENT."""
    if len(queries) != len(vectors) or len(queries) != len(stripped_vectors):
        raise ValueError(f"{len(queries)} queries but {len(vectors)} and {len(stripped_vectors)} vectors")
    if not queries:
        return np.zeros(0, dtype=np.intp)
    graph = link_graph(queries, vectors, stripped_vectors, subject, neighbors=neighbors, min_link=min_link)
    return refine(
        graph, communities(graph, resolution=resolution), resolution=resolution, largest=largest or LARGEST_INTENT
    )


def _conductance(graph: sparse.csr_matrix, labels: np.ndarray) -> float:
    """The volume-weighted share of the parts' link weight that leaves their part: low for a clean cut."""
    degree = np.asarray(graph.sum(axis=1)).ravel()
    coo = graph.tocoo()
    leaving = np.bincount(
        labels[coo.row], weights=coo.data * (labels[coo.row] != labels[coo.col]), minlength=int(labels.max()) + 1
    )
    volume = np.bincount(labels, weights=degree, minlength=int(labels.max()) + 1)
    return float(leaving.sum() / volume.sum()) if volume.sum() > 0 else 1.0


def refine(
    graph: sparse.csr_matrix, labels: np.ndarray, *, resolution: float = RESOLUTION, largest: int = LARGEST_INTENT
) -> np.ndarray:
    """Communities of more than `largest` queries are looked at again on their own links.

    Modularity has a resolution limit: in a big graph (a 1,000-query export) it merges groups that
    a small graph keeps apart, so a community is split again, as a graph of its own, while it is too
    big and its own links still divide it. Labels are renumbered by lowest member.
    """
    labels = np.asarray(labels).copy()
    pending = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    next_label = int(labels.max(initial=-1)) + 1
    while pending:
        members = pending.pop()
        if len(members) <= largest:
            continue
        inner = graph[members][:, members].tocsr()
        sub = communities(inner, resolution=resolution)
        if sub.max(initial=0) == 0 or _conductance(inner, sub) > MAX_SPLIT_CONDUCTANCE:
            continue  # its links do not divide it
        for part in range(1, int(sub.max()) + 1):
            labels[members[sub == part]] = next_label
            next_label += 1
        pending.extend(members[sub == part] for part in range(int(sub.max()) + 1))
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    renumber = np.empty(labels.max() + 1, dtype=np.intp)
    renumber[np.unique(labels)[order]] = np.arange(len(order))
    return renumber[labels]


def group_queries(
    rows: Sequence,
    vectors: np.ndarray,
    stripped_vectors: np.ndarray | None,
    subject: frozenset[str],
    *,
    method: str,
    eps: float,
    min_samples: int,
    neighbors: int = NEIGHBORS,
    resolution: float = RESOLUTION,
) -> list:
    """Clusters (pageperfect.analysis.clustering.Cluster) of the rows' queries by `method`: "intents" (this
    module) or "dbscan" (the seed system's, on the vectors as asked). CPU-bound."""
    from pageperfect.analysis.clustering import cluster_keywords, clusters_from_labels

    if method == "dbscan":
        return cluster_keywords(rows, vectors, eps=eps, min_samples=min_samples)
    if method != "intents":
        raise ValueError(f"unknown clustering method {method!r}; known: intents, dbscan")
    if stripped_vectors is None:
        raise ValueError("method 'intents' needs the vectors of the queries without their subject")
    labels = intent_labels(
        [r.query for r in rows], vectors, stripped_vectors, subject, neighbors=neighbors, resolution=resolution
    )
    return clusters_from_labels(rows, vectors, labels)


def grouped_share(clusters: Sequence) -> float:
    """The share of queries that sit in clusters of two or more (1.0 for no queries)."""
    total = sum(c.size for c in clusters)
    return sum(c.size for c in clusters if c.size > 1) / total if total else 1.0
