"""Groups search queries whose embeddings are close (DBSCAN, cosine distance).

DBSCAN only needs each point's eps-neighbourhood, so instead of the n-by-n
distance matrix scikit-learn would fill in, the neighbourhoods are computed in
row blocks (float32 matrix products of bounded size) and handed to DBSCAN as a
sparse precomputed radius graph. Memory grows with n x dim plus the number of
close pairs, not with n squared: 20,000 queries of 1,536 dims stay well under 1 GB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.cluster import DBSCAN
from threadpoolctl import threadpool_limits

from pageperfect.models import KeywordRow

BLOCK_BYTES = 64 * 2**20  # one block of similarities, float32
# float32 dot products of unit vectors are off by ~1e-6 at 1,536 dims; pairs this
# close to the eps boundary are decided again in float64.
BOUNDARY_TOLERANCE = 1e-5
APPROXIMATE_DIMS = 128


def default_blas_threads() -> int:
    """BLAS threads for one clustering call: leaves a core for the event loop and other activities."""
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass
class Cluster:
    cluster_id: int
    representative: str  # the member query with the most impressions
    keywords: list[str]  # impressions descending
    member_indices: list[int]  # row indices, in the same order as keywords
    size: int
    total_impressions: float
    avg_impressions: float
    total_clicks: float
    avg_position: float  # impression-weighted; a plain mean when no member has impressions
    centroid: np.ndarray  # float32, L2-normalized mean of the members' embeddings


def _unit_rows(matrix: np.ndarray, dtype: type) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=dtype)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def radius_graph(embeddings: np.ndarray, eps: float, *, block_bytes: int = BLOCK_BYTES) -> sparse.csr_matrix:
    """Sparse matrix of the cosine distances of all pairs within eps.

    Self pairs and duplicates are stored, as explicit zeros where the distance is 0.

    Rows that are all zeros have no neighbours. Distances are float64 so that
    DBSCAN's own `<= eps` check agrees with the one made here.
    """
    source = np.asarray(embeddings)
    n = source.shape[0]
    unit = _unit_rows(source, np.float32)
    nonzero = np.linalg.norm(unit, axis=1) > 0
    rows_per_block = max(1, block_bytes // (4 * max(n, 1)))
    min_similarity = np.float32(1.0 - eps - BOUNDARY_TOLERANCE)
    row_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    data_parts: list[np.ndarray] = []
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        # The similarities are symmetric: only the pairs on or right of the diagonal are
        # computed (half the products) and mirrored below.
        similarities = unit[start:stop] @ unit[start:].T
        rows, cols = np.nonzero(similarities >= min_similarity)
        upper = cols >= rows
        rows, cols = rows[upper], cols[upper]
        distances = 1.0 - similarities[rows, cols].astype(np.float64)
        del similarities
        rows += start
        cols += start
        near = np.abs(distances - eps) <= BOUNDARY_TOLERANCE
        if near.any():
            distances[near] = _exact_distances(source, rows[near], cols[near])
        keep = (distances <= eps) & nonzero[rows] & nonzero[cols]
        row_parts.append(rows[keep])
        col_parts.append(cols[keep])
        data_parts.append(np.maximum(distances[keep], 0.0))
    rows = np.concatenate(row_parts) if row_parts else np.zeros(0, dtype=np.intp)
    cols = np.concatenate(col_parts) if col_parts else np.zeros(0, dtype=np.intp)
    data = np.concatenate(data_parts) if data_parts else np.zeros(0)
    mirrored = rows != cols
    rows, cols = np.concatenate([rows, cols[mirrored]]), np.concatenate([cols, rows[mirrored]])
    data = np.concatenate([data, data[mirrored]])
    order = np.lexsort((cols, rows))  # row by row, columns ascending
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    # Built from its arrays so explicit zeros (duplicates) survive as stored entries.
    return sparse.csr_matrix((data[order], cols[order].astype(np.int32), indptr), shape=(n, n))


def _exact_distances(source: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine distances in float64, symmetric in (left, right) so that d(i, j) == d(j, i) exactly."""
    low, high = np.minimum(left, right), np.maximum(left, right)
    out = np.empty(len(low))
    step = max(1, 2**22 // max(source.shape[1], 1))  # bounds the float64 copies
    for s in range(0, len(low), step):
        a = _unit_rows(source[low[s : s + step]], np.float64)
        b = _unit_rows(source[high[s : s + step]], np.float64)
        out[s : s + step] = 1.0 - np.einsum("ij,ij->i", a, b)
    return out


def _project(embeddings: np.ndarray, dims: int = APPROXIMATE_DIMS) -> np.ndarray:
    """A fixed Gaussian random projection to `dims` dimensions (cosines kept up to a few hundredths)."""
    from sklearn.random_projection import GaussianRandomProjection

    if embeddings.shape[1] <= dims:
        return embeddings
    unit = _unit_rows(embeddings, np.float32)
    projected = GaussianRandomProjection(n_components=dims, random_state=0).fit_transform(unit)
    return _unit_rows(projected, np.float32)


def dbscan_labels(
    embeddings: np.ndarray, *, eps: float, min_samples: int, approximate: bool = False, threads: int | None = None
) -> np.ndarray:
    """DBSCAN labels with cosine distance, the same as DBSCAN(metric="cosine").fit(embeddings).labels_.

    The one difference: a pair whose float32 distance lies within float32 rounding
    of eps is decided by its float64 distance, where scikit-learn's float32 path
    may fall either way.

    approximate=True first projects the embeddings to 128 dimensions: faster on
    wide embeddings, but pairs near eps may fall on the other side, so labels can
    differ from exact DBSCAN.
    """
    matrix = np.asarray(embeddings)
    if matrix.ndim != 2:
        raise ValueError("embeddings must be a 2-d array")
    if matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    with threadpool_limits(limits=threads or default_blas_threads(), user_api="blas"):
        if approximate:
            matrix = _project(matrix)
        graph = radius_graph(matrix, eps, block_bytes=BLOCK_BYTES)
        return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(graph).labels_


def cluster_keywords(
    rows: Sequence[KeywordRow],
    embeddings: np.ndarray,
    *,
    eps: float,
    min_samples: int,
    approximate: bool = False,
    threads: int | None = None,
) -> list[Cluster]:
    """Clusters of the rows' queries, biggest (by total impressions) first; cluster_id is the rank.

    DBSCAN noise points become clusters of one, so no query is dropped.
    CPU-bound: call it through asyncio.to_thread from async code.
    """
    if len(rows) != len(embeddings):
        raise ValueError(f"{len(rows)} rows but {len(embeddings)} embeddings")
    if not rows:
        return []
    labels = dbscan_labels(embeddings, eps=eps, min_samples=min_samples, approximate=approximate, threads=threads)
    groups: dict[int, list[int]] = {}
    singleton = -1
    for index, label in enumerate(labels):
        if label < 0:
            groups[singleton] = [index]
            singleton -= 1
        else:
            groups.setdefault(int(label), []).append(index)
    unit = _unit_rows(embeddings, np.float32)
    clusters = [_summarize(rows, unit, members) for members in groups.values()]
    clusters.sort(key=lambda c: (-c.total_impressions, min(c.member_indices)))
    for rank, cluster in enumerate(clusters):
        cluster.cluster_id = rank
    return clusters


def _summarize(rows: Sequence[KeywordRow], unit: np.ndarray, members: list[int]) -> Cluster:
    members = sorted(members, key=lambda i: -rows[i].impressions)  # stable: ties keep input order
    impressions = np.array([rows[i].impressions for i in members], dtype=np.float64)
    positions = np.array([rows[i].position for i in members], dtype=np.float64)
    total = float(impressions.sum())
    avg_position = float(positions @ impressions / total) if total > 0 else float(positions.mean())
    centroid = unit[members].mean(axis=0)
    norm = np.linalg.norm(centroid)
    centroid = centroid / norm if norm > 0 else unit[members[0]].copy()
    return Cluster(
        cluster_id=-1,
        representative=rows[members[0]].query,
        keywords=[rows[i].query for i in members],
        member_indices=members,
        size=len(members),
        total_impressions=total,
        avg_impressions=total / len(members),
        total_clicks=float(sum(rows[i].clicks for i in members)),
        avg_position=avg_position,
        centroid=centroid.astype(np.float32),
    )
