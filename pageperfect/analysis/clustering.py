"""Groups search queries whose embeddings are close (DBSCAN, cosine distance).

DBSCAN only needs each point's eps-neighbourhood, so instead of the n-by-n
distance matrix scikit-learn would fill in, the pairs within eps are found in
row blocks (float32 matrix products of bounded size), and DBSCAN's labels are
derived from those pairs directly (core points, connected components, border
points), the same labels scikit-learn's DBSCAN gives. Memory grows with n x dim
plus the number of close pairs, not with n squared: 20,000 queries of 1,536 dims
stay well under 1 GB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from threadpoolctl import ThreadpoolController

from pageperfect.models import KeywordRow

BLOCK_BYTES = 64 * 2**20  # one block of similarities, float32
# float32 dot products of unit vectors are off by ~1e-6 at 1,536 dims; pairs this
# close to the eps boundary are decided again in float64.
BOUNDARY_TOLERANCE = 1e-5
# approximate=True: k-means cells of about CELL_SIZE points, found in a random
# projection to PARTITION_DIMS dims; each point is compared (exactly) with the
# members of its PROBES nearest cells.
CELL_SIZE = 64
PROBES = 8
PARTITION_DIMS = 128
KMEANS_ITERATIONS = 10
KMEANS_SAMPLE_PER_CELL = 64


_threadpools: ThreadpoolController | None = None


def _blas_limits(threads: int):
    """threadpool_limits for BLAS, with the loaded libraries looked up once (about 1 ms a call otherwise)."""
    global _threadpools
    if _threadpools is None:
        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=threads, user_api="blas")


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


def _prepared(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 unit rows and the mask of rows that are not all zeros (a zero row has no neighbours)."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))  # no n x dim temporary
    nonzero = norms > 0
    norms[~nonzero] = 1.0
    return matrix / norms[:, None], nonzero


def _within_eps(
    similarities: np.ndarray,
    eps: float,
    source: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    nonzero: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Which of the candidate pairs (left, right), with float32 similarities, are within eps.

    Returns the mask and the float64 distances. A pair within BOUNDARY_TOLERANCE of eps is
    decided by its float64 distance from the source embeddings.
    """
    distances = 1.0 - similarities.astype(np.float64)
    near = np.abs(distances - eps) <= BOUNDARY_TOLERANCE
    if near.any():
        distances[near] = _exact_distances(source, left[near], right[near])
    return (distances <= eps) & nonzero[left] & nonzero[right], distances


def _radius_pairs(
    source: np.ndarray, unit: np.ndarray, nonzero: np.ndarray, eps: float, block_bytes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i <= j within eps (self pairs included), row by row with columns ascending, and their distances."""
    n = unit.shape[0]
    rows_per_block = max(1, block_bytes // (4 * max(n, 1)))
    min_similarity = np.float32(1.0 - eps - BOUNDARY_TOLERANCE)
    row_parts: list[np.ndarray] = []
    col_parts: list[np.ndarray] = []
    data_parts: list[np.ndarray] = []
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        # The similarities are symmetric: only the pairs on or right of the diagonal are
        # computed (half the products).
        similarities = unit[start:stop] @ unit[start:].T
        width = similarities.shape[1]
        flat = np.flatnonzero(similarities >= min_similarity)  # row-major: rows, then columns ascending
        rows, cols = np.divmod(flat, width)
        upper = cols >= rows
        flat, rows, cols = flat[upper], rows[upper], cols[upper]
        values = similarities.ravel()[flat]
        del similarities
        rows += start
        cols += start
        keep, distances = _within_eps(values, eps, source, rows, cols, nonzero)
        row_parts.append(rows[keep])
        col_parts.append(cols[keep])
        data_parts.append(np.maximum(distances[keep], 0.0))
    rows = np.concatenate(row_parts) if row_parts else np.zeros(0, dtype=np.intp)
    cols = np.concatenate(col_parts) if col_parts else np.zeros(0, dtype=np.intp)
    data = np.concatenate(data_parts) if data_parts else np.zeros(0)
    return rows, cols, data


def radius_graph(embeddings: np.ndarray, eps: float, *, block_bytes: int = BLOCK_BYTES) -> sparse.csr_matrix:
    """Sparse matrix of the cosine distances of all pairs within eps.

    Self pairs and duplicates are stored, as explicit zeros where the distance is 0.

    Rows that are all zeros have no neighbours. Distances are float64 so that
    DBSCAN's own `<= eps` check agrees with the one made here.
    """
    source = np.asarray(embeddings)
    n = source.shape[0]
    unit, nonzero = _prepared(source)
    rows, cols, data = _radius_pairs(source, unit, nonzero, eps, block_bytes)
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


def _dbscan_from_pairs(n: int, left: np.ndarray, right: np.ndarray, min_samples: int) -> np.ndarray:
    """DBSCAN labels from the distinct pairs within eps (i != j, each pair once), as scikit-learn assigns them.

    scikit-learn counts every point as its own neighbour, makes the points with at
    least min_samples neighbours core points, and expands clusters from the core
    points in index order: a cluster is a connected component of core points
    (numbered by its lowest core index), and a border point (not core, next to a
    core point) takes the first cluster to reach it, the lowest-numbered one.
    """
    counts = np.ones(n, dtype=np.int64)
    counts += np.bincount(left, minlength=n)
    counts += np.bincount(right, minlength=n)
    core = counts >= min_samples
    labels = np.full(n, -1, dtype=np.intp)
    if not core.any():
        return labels
    both = core[left] & core[right]
    graph = sparse.coo_matrix(
        (np.ones(int(both.sum()), dtype=np.int8), (left[both], right[both])), shape=(n, n)
    ).tocsr()
    _, component = connected_components(graph, directed=False)
    core_index = np.flatnonzero(core)
    # Components in order of their lowest core index: scikit-learn's cluster numbers.
    found, first = np.unique(component[core_index], return_index=True)
    rank = np.empty(component.max() + 1, dtype=np.intp)
    rank[found[np.argsort(first, kind="stable")]] = np.arange(len(found))
    labels[core_index] = rank[component[core_index]]
    border = np.full(n, np.iinfo(np.intp).max, dtype=np.intp)
    for point, neighbour in ((left, right), (right, left)):
        edge = core[neighbour] & ~core[point]
        np.minimum.at(border, point[edge], labels[neighbour[edge]])
    reached = ~core & (border != np.iinfo(np.intp).max)
    labels[reached] = border[reached]
    return labels


def _kmeans_cells(points: np.ndarray, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means centres (unit rows) of a sample of `points` (unit rows)."""
    sample = points[rng.choice(len(points), min(len(points), KMEANS_SAMPLE_PER_CELL * cells), replace=False)]
    centres = sample[rng.choice(len(sample), cells, replace=False)].copy()
    for _ in range(KMEANS_ITERATIONS):
        nearest = np.argmax(sample @ centres.T, axis=1)
        members = sparse.csr_matrix(
            (np.ones(len(sample), dtype=np.float32), (nearest, np.arange(len(sample)))), shape=(cells, len(sample))
        )
        centres = np.asarray(members @ sample)
        norms = np.linalg.norm(centres, axis=1)
        empty = norms == 0
        if empty.any():  # an empty cell restarts from a random sample point
            centres[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]
            norms[empty] = 1.0
        centres /= norms[:, None]
    return centres


def _approximate_pairs(
    source: np.ndarray, unit: np.ndarray, nonzero: np.ndarray, eps: float, block_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs within eps (i != j, each once) among the pairs the cells bring together; see dbscan_labels."""
    n, dims = unit.shape
    cells = n // CELL_SIZE
    if cells <= PROBES:  # every point would probe every cell: the exact pairs cost no more
        rows, cols, _ = _radius_pairs(source, unit, nonzero, eps, block_bytes)
        distinct = rows != cols
        return rows[distinct], cols[distinct]
    rng = np.random.default_rng(0)
    # Cells are chosen on the centred vectors (embeddings often share a common
    # direction, which would put most points in one cell), projected to fewer dims.
    if dims > PARTITION_DIMS:
        projection = rng.standard_normal((dims, PARTITION_DIMS), dtype=np.float32)
        partition = unit @ projection
        partition -= unit.mean(axis=0) @ projection
    else:
        partition = unit - unit.mean(axis=0)
    partition, _ = _prepared(partition)
    centres = _kmeans_cells(partition, cells, rng)
    probes = np.empty((n, PROBES), dtype=np.intp)
    home = np.empty(n, dtype=np.intp)
    step = max(1, block_bytes // (4 * cells))
    for start in range(0, n, step):
        similarities = partition[start : start + step] @ centres.T
        nearest = np.argpartition(-similarities, PROBES - 1, axis=1)[:, :PROBES]
        probes[start : start + step] = nearest
        best = np.argmax(np.take_along_axis(similarities, nearest, axis=1), axis=1)
        home[start : start + step] = nearest[np.arange(len(nearest)), best]
    del partition
    members_order = np.argsort(home, kind="stable")
    member_bounds = np.searchsorted(home[members_order], np.arange(cells + 1))
    probe_cell = probes.ravel()
    probe_order = np.argsort(probe_cell, kind="stable")
    probe_bounds = np.searchsorted(probe_cell[probe_order], np.arange(cells + 1))
    probe_point = probe_order // PROBES  # the point making each probe, grouped by cell
    min_similarity = np.float32(1.0 - eps - BOUNDARY_TOLERANCE)
    left_parts: list[np.ndarray] = []
    right_parts: list[np.ndarray] = []
    for cell in range(cells):
        members = members_order[member_bounds[cell] : member_bounds[cell + 1]]
        queries = probe_point[probe_bounds[cell] : probe_bounds[cell + 1]]
        if len(members) == 0 or len(queries) == 0:
            continue
        member_rows = unit[members]
        step = max(1, block_bytes // (4 * len(members)))
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            similarities = unit[chunk] @ member_rows.T
            flat = np.flatnonzero(similarities >= min_similarity)
            q, m = np.divmod(flat, len(members))
            left, right = chunk[q], members[m]
            # A pair can be found from both sides (each point's cell probed by the other);
            # it is kept once, from its lower index.
            found_back = (probes[right] == home[left][:, None]).any(axis=1)
            once = (left != right) & ((left < right) | ~found_back)
            flat, left, right = flat[once], left[once], right[once]
            keep, _ = _within_eps(similarities.ravel()[flat], eps, source, left, right, nonzero)
            left_parts.append(left[keep])
            right_parts.append(right[keep])
    empty = np.zeros(0, dtype=np.intp)
    left = np.concatenate(left_parts) if left_parts else empty
    right = np.concatenate(right_parts) if right_parts else empty
    return left, right


def dbscan_labels(
    embeddings: np.ndarray, *, eps: float, min_samples: int, approximate: bool = False, threads: int | None = None
) -> np.ndarray:
    """DBSCAN labels with cosine distance, the same as DBSCAN(metric="cosine").fit(embeddings).labels_.

    The one difference: a pair whose float32 distance lies within float32 rounding
    of eps is decided by its float64 distance, where scikit-learn's float32 path
    may fall either way.

    approximate=True compares each point only with the points of nearby cells
    instead of all points: the points are split into k-means cells of about
    CELL_SIZE (64) points, chosen on a random projection of the centred vectors to
    128 dims, and each point is compared with the members of its PROBES (8)
    nearest cells. Every pair compared is decided on its exact distance, as
    above, so no pair beyond eps is ever added and the decisions near eps are
    the exact ones; what can differ is a pair within eps whose two points lie in
    cells that neither of them probes. Such a missed pair can split a cluster
    or leave a border point as noise. It is most likely when neighbourhoods
    are wide compared with the cells: eps large against the spread of the
    data (a point with many hundreds of neighbours), or data with no cluster
    structure, where cell borders cut through neighbourhoods. Below
    (PROBES + 1) x CELL_SIZE = 576 points it gives the exact labels.
    """
    matrix = np.asarray(embeddings)
    if matrix.ndim != 2:
        raise ValueError("embeddings must be a 2-d array")
    n = matrix.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    with _blas_limits(threads or default_blas_threads()):
        unit, nonzero = _prepared(matrix)
        if approximate:
            left, right = _approximate_pairs(matrix, unit, nonzero, eps, BLOCK_BYTES)
        else:
            rows, cols, _ = _radius_pairs(matrix, unit, nonzero, eps, BLOCK_BYTES)
            distinct = rows != cols
            left, right = rows[distinct], cols[distinct]
        del unit
        return _dbscan_from_pairs(n, left, right, min_samples)


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
    return _summarize(rows, _unit_rows(embeddings, np.float32), labels)


def _summarize(rows: Sequence[KeywordRow], unit: np.ndarray, labels: np.ndarray) -> list[Cluster]:
    """One Cluster per DBSCAN label and per noise point, ranked; every sum at once, per group (no loop per cluster)."""
    n = len(rows)
    group = np.asarray(labels, dtype=np.intp).copy()
    noise = group < 0
    group[noise] = group.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    count = int(group.max()) + 1
    impressions = np.fromiter((r.impressions for r in rows), dtype=np.float64, count=n)
    positions = np.fromiter((r.position for r in rows), dtype=np.float64, count=n)
    clicks = np.fromiter((r.clicks for r in rows), dtype=np.float64, count=n)
    size = np.bincount(group, minlength=count)
    total = np.bincount(group, weights=impressions, minlength=count)
    weighted_position = np.bincount(group, weights=positions * impressions, minlength=count)
    plain_position = np.bincount(group, weights=positions, minlength=count) / size
    avg_position = np.where(total > 0, weighted_position / np.where(total > 0, total, 1.0), plain_position)
    total_clicks = np.bincount(group, weights=clicks, minlength=count)
    # Members by group, then impressions descending, ties in input order.
    order = np.lexsort((np.arange(n), -impressions, group))
    bounds = np.searchsorted(group[order], np.arange(count + 1))
    membership = sparse.csr_matrix((np.ones(n, dtype=np.float32), (group, np.arange(n))), shape=(count, n))
    centroids = np.asarray(membership @ unit) / size[:, None].astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1)
    degenerate = norms == 0  # members cancel out: the top member's direction stands in
    centroids[degenerate] = unit[order[bounds[:-1][degenerate]]]
    centroids[~degenerate] /= norms[~degenerate, None]
    first_member = np.full(count, n, dtype=np.intp)
    np.minimum.at(first_member, group, np.arange(n))
    ranking = np.lexsort((first_member, -total))  # total impressions descending, then first appearance
    clusters = []
    for rank, g in enumerate(ranking.tolist()):
        members = order[bounds[g] : bounds[g + 1]].tolist()
        clusters.append(
            Cluster(
                cluster_id=rank,
                representative=rows[members[0]].query,
                keywords=[rows[i].query for i in members],
                member_indices=members,
                size=len(members),
                total_impressions=float(total[g]),
                avg_impressions=float(total[g]) / len(members),
                total_clicks=float(total_clicks[g]),
                avg_position=float(avg_position[g]),
                centroid=centroids[g].astype(np.float32),
            )
        )
    return clusters


def summarize_members(rows: Sequence[KeywordRow], embeddings: np.ndarray, members: Sequence[int]) -> Cluster:
    """The Cluster of these rows (indices into rows and embeddings), with member_indices into the same."""
    members = list(members)
    part = _summarize(
        [rows[i] for i in members],
        _unit_rows(np.asarray(embeddings)[members], np.float32),
        np.zeros(len(members), dtype=np.intp),
    )[0]
    part.member_indices = [members[i] for i in part.member_indices]
    return part


def clusters_from_labels(rows: Sequence[KeywordRow], embeddings: np.ndarray, labels: np.ndarray) -> list[Cluster]:
    """Ranked Clusters from any labelling (negative labels: clusters of one)."""
    if len(rows) != len(embeddings) or len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows, {len(embeddings)} embeddings, {len(labels)} labels")
    if not rows:
        return []
    return _summarize(rows, _unit_rows(embeddings, np.float32), np.asarray(labels))
