import tracemalloc

import numpy as np
import pytest
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from pageperfect.analysis import clustering
from pageperfect.analysis.clustering import cluster_keywords, dbscan_labels, radius_graph
from pageperfect.models import KeywordRow


def blobs(seed: int, n: int, dims: int, centers: int, spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centers, dims))
    which = rng.integers(0, centers, n)
    return (middle[which] + spread * rng.normal(size=(n, dims))).astype(np.float32)


def with_duplicates(matrix: np.ndarray, count: int) -> np.ndarray:
    return np.vstack([matrix, matrix[:count], matrix[:3]])


# Exact dyadic unit vectors: every cosine is exact in any precision, so some pairs
# sit exactly on eps (distance 0.5 between the first two).
DYADIC = np.array(
    [[1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0], [0, 1, 0, 0], [0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, 0.5]],
    dtype=np.float32,
)

DATASETS = {
    "random": (np.random.default_rng(1).normal(size=(400, 24)).astype(np.float32), [(0.5, 3), (0.7, 5)]),
    "tight_blobs": (blobs(2, 600, 64, 8, 0.3), [(0.05, 4), (0.1, 2), (0.3, 10)]),
    "loose_blobs": (blobs(3, 900, 256, 25, 0.7), [(0.25, 3), (0.35, 5)]),
    "duplicates": (with_duplicates(blobs(4, 300, 32, 6, 0.8), 40), [(1e-4, 2), (0.2, 3), (0.4, 2)]),
    "dyadic_boundary": (DYADIC, [(0.5, 2), (0.5, 3), (0.4999999, 2), (0.5000001, 3), (1.0, 4)]),
}
CASES = [(name, eps, ms) for name, (_, params) in DATASETS.items() for eps, ms in params]


@pytest.mark.parametrize(("name", "eps", "min_samples"), CASES)
def test_labels_identical_to_plain_dbscan(name: str, eps: float, min_samples: int):
    matrix = DATASETS[name][0]
    expected = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(matrix).labels_
    got = dbscan_labels(matrix, eps=eps, min_samples=min_samples)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("seed", range(40))
def test_labels_identical_on_random_small_cases(seed: int):
    """Many small cases with border points shared by clusters, zero rows and duplicates:
    the labels are derived from the pairs by hand, so they are checked against scikit-learn's."""
    rng = np.random.default_rng(1000 + seed)
    n, dims = int(rng.integers(5, 120)), int(rng.integers(2, 12))
    matrix = blobs(seed, n, dims, int(rng.integers(1, 6)), float(rng.uniform(0.2, 1.5)))
    matrix[rng.random(n) < 0.05] = 0.0
    matrix = np.vstack([matrix, matrix[: int(rng.integers(0, 5))]])
    eps, min_samples = float(rng.uniform(0.02, 0.6)), int(rng.integers(1, 8))
    expected = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(matrix).labels_
    assert np.array_equal(dbscan_labels(matrix, eps=eps, min_samples=min_samples), expected)


def test_datasets_exercise_clusters_and_noise():
    # Guards the identity test against trivial cases (all noise or one cluster).
    labels = DBSCAN(eps=0.25, min_samples=3, metric="cosine").fit(DATASETS["loose_blobs"][0]).labels_
    assert len(set(labels)) > 10 and (labels == -1).any()


@pytest.mark.parametrize("block_bytes", [4 * 900 * 1, 4 * 900 * 7, 4 * 900 * 64])
def test_blocked_graph_is_the_same(block_bytes: int, monkeypatch: pytest.MonkeyPatch):
    matrix = DATASETS["loose_blobs"][0]
    whole = radius_graph(matrix, 0.3)
    blocked = radius_graph(matrix, 0.3, block_bytes=block_bytes)
    # Same pairs; distances may differ in the last float32 bits (other GEMM blocking).
    assert np.array_equal(whole.indptr, blocked.indptr) and np.array_equal(whole.indices, blocked.indices)
    assert np.allclose(whole.data, blocked.data, atol=1e-6)
    monkeypatch.setattr(clustering, "BLOCK_BYTES", block_bytes)
    expected = DBSCAN(eps=0.3, min_samples=3, metric="cosine").fit(matrix).labels_
    assert np.array_equal(dbscan_labels(matrix, eps=0.3, min_samples=3), expected)


def test_duplicates_are_explicit_zero_distances():
    # 58 rows: rows 0-2 appear three times, rows 3-4 twice.
    graph = radius_graph(with_duplicates(blobs(5, 50, 16, 3, 0.5), 5), 1e-4)
    assert graph.nnz == 58 + 3 * 6 + 2 * 2  # self pairs + duplicate pairs both ways
    assert (graph.data <= 1e-6).all()
    labels = DBSCAN(eps=1e-4, min_samples=2, metric="precomputed").fit(graph).labels_
    assert len(set(labels) - {-1}) == 5 and (labels == -1).sum() == 58 - 13


def test_graph_memory_stays_blocked():
    matrix = blobs(6, 4000, 64, 400, 0.05)
    tracemalloc.start()
    radius_graph(matrix, 0.05, block_bytes=2**20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4000 * 4000 * 4 / 8  # an n-by-n float32 matrix would be 64 MB


def test_approximate_mode_finds_the_same_groups_on_separated_data():
    matrix = blobs(7, 500, 512, 10, 0.3)
    exact = dbscan_labels(matrix, eps=0.2, min_samples=3)
    approximate = dbscan_labels(matrix, eps=0.2, min_samples=3, approximate=True)
    assert len(set(exact)) == 10
    assert adjusted_rand_score(exact, approximate) > 0.95


def leaning_topics(seed: int, n: int, dims: int, topics: int) -> np.ndarray:
    """Topics sharing a common direction, noise of varying size: many pairs sit within 0.05 of eps = 0.3."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dims)
    centres = rng.standard_normal((topics, dims))
    matrix = 0.8 * common + centres[rng.integers(0, topics, n)]
    matrix += rng.uniform(0.3, 1.2, n)[:, None] * rng.standard_normal((n, dims))
    return matrix.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_approximate_mode_agrees_with_exact_when_pairs_crowd_near_eps(seed: int):
    matrix = leaning_topics(seed, 800, 256, 40)
    distances = 1 - clustering._unit_rows(matrix, np.float64) @ clustering._unit_rows(matrix, np.float64).T
    assert (np.abs(distances - 0.3) < 0.05).sum() > (distances <= 0.3).sum() / 4  # crowded near eps
    exact = dbscan_labels(matrix, eps=0.3, min_samples=2)
    assert len(set(exact)) > 30
    assert len(matrix) // clustering.CELL_SIZE > clustering.PROBES  # the cells are used, not the exact path
    approximate = dbscan_labels(matrix, eps=0.3, min_samples=2, approximate=True)
    assert adjusted_rand_score(exact, approximate) >= 0.95


def test_approximate_pairs_are_exact_pairs():
    # Every pair the approximate mode keeps is within eps, each once; at most a few are missed.
    matrix = with_duplicates(leaning_topics(3, 900, 128, 30), 20)
    unit, nonzero = clustering._prepared(matrix)
    rows, cols, _ = clustering._radius_pairs(matrix, unit, nonzero, 0.3, clustering.BLOCK_BYTES)
    exact = {(int(a), int(b)) for a, b in zip(rows, cols) if a != b}
    left, right = clustering._approximate_pairs(matrix, unit, nonzero, 0.3, clustering.BLOCK_BYTES)
    found = [(int(min(a, b)), int(max(a, b))) for a, b in zip(left, right)]
    assert len(found) == len(set(found)) and set(found) <= exact
    assert len(found) >= 0.95 * len(exact)


def test_labels_identical_with_every_point_core():
    matrix = DATASETS["loose_blobs"][0]
    expected = DBSCAN(eps=0.3, min_samples=1, metric="cosine").fit(matrix).labels_
    assert np.array_equal(dbscan_labels(matrix, eps=0.3, min_samples=1), expected)


def rows_for(queries: list[tuple[str, float, float]]) -> list[KeywordRow]:
    return [KeywordRow(query=q, impressions=imp, position=pos, clicks=imp / 10) for q, imp, pos in queries]


def test_cluster_summaries_and_noise_singletons():
    base = np.eye(8, dtype=np.float32)
    near = lambda axis, tilt: base[axis] + tilt * base[7]  # noqa: E731 - small helper
    embeddings = np.stack([near(0, 0.0), near(0, 0.05), near(0, 0.1), near(1, 0.0), near(1, 0.05), base[2], base[3]])
    rows = rows_for(
        [
            ("a small", 10, 4.0),
            ("a big", 300, 12.0),
            ("a middle", 90, 2.0),
            ("b one", 50, 5.0),
            ("b two", 50, 7.0),
            ("lonely big", 1000, 3.0),
            ("lonely small", 1, 40.0),
        ]
    )
    clusters = cluster_keywords(rows, embeddings, eps=0.05, min_samples=2)

    assert [c.cluster_id for c in clusters] == list(range(len(clusters)))
    assert [c.total_impressions for c in clusters] == [1000, 400, 100, 1]  # ordered by impressions
    assert sorted(i for c in clusters for i in c.member_indices) == list(range(7))  # nobody lost

    lonely, group_a, group_b, tiny = clusters
    assert lonely.keywords == ["lonely big"] and lonely.size == 1 and lonely.avg_position == 3.0
    assert group_a.representative == "a big"
    assert group_a.keywords == ["a big", "a middle", "a small"]
    assert group_a.member_indices == [1, 2, 0]
    assert group_a.avg_position == pytest.approx((300 * 12 + 90 * 2 + 10 * 4) / 400)
    assert group_a.avg_impressions == pytest.approx(400 / 3)
    assert group_a.total_clicks == pytest.approx(40)
    assert group_b.keywords == ["b one", "b two"]  # ties keep input order
    assert tiny.keywords == ["lonely small"]
    for cluster in clusters:
        assert cluster.centroid.dtype == np.float32
        assert np.linalg.norm(cluster.centroid) == pytest.approx(1.0, abs=1e-6)
    assert float(group_a.centroid @ base[0]) > 0.99


def _reference_clusters(rows, embeddings, labels):
    """The summaries written out one cluster at a time: what cluster_keywords computes for all clusters at once."""
    groups: dict = {}
    for index, label in enumerate(labels):
        groups.setdefault(("noise", index) if label < 0 else ("cluster", int(label)), []).append(index)
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-30)
    summaries = []
    for members in groups.values():
        members = sorted(members, key=lambda i: -rows[i].impressions)
        total = sum(rows[i].impressions for i in members)
        position = (
            sum(rows[i].position * rows[i].impressions for i in members) / total
            if total
            else sum(rows[i].position for i in members) / len(members)
        )
        centroid = unit[members].mean(axis=0)
        norm = np.linalg.norm(centroid)
        summaries.append(
            dict(
                keywords=[rows[i].query for i in members],
                members=members,
                total=total,
                clicks=sum(rows[i].clicks for i in members),
                position=position,
                centroid=centroid / norm if norm > 0 else unit[members[0]],
                first=min(members),
            )
        )
    return sorted(summaries, key=lambda c: (-c["total"], c["first"]))


@pytest.mark.parametrize("seed", range(30))
def test_summaries_match_a_cluster_by_cluster_reference(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    embeddings = rng.standard_normal((n, int(rng.integers(2, 10)))).astype(np.float32)
    embeddings[rng.random(n) < 0.1] = 0  # zero rows: noise of their own
    repeated = rng.random(n) < 0.3
    embeddings[repeated] = embeddings[0]  # exact duplicates: clusters with tied members
    rows = [
        KeywordRow(
            query=f"q{i}",
            impressions=float(rng.choice([0, 0, 1, 5, 40])),
            clicks=float(rng.integers(0, 4)),
            position=float(rng.uniform(1, 60)),
        )
        for i in range(n)
    ]
    eps, min_samples = float(rng.uniform(0.05, 0.6)), int(rng.integers(1, 4))
    clusters = cluster_keywords(rows, embeddings, eps=eps, min_samples=min_samples)
    expected = _reference_clusters(rows, embeddings, dbscan_labels(embeddings, eps=eps, min_samples=min_samples))

    assert [c.cluster_id for c in clusters] == list(range(len(expected)))
    for got, want in zip(clusters, expected, strict=True):
        assert got.keywords == want["keywords"] and got.member_indices == want["members"]
        assert got.representative == want["keywords"][0] and got.size == len(want["members"])
        assert got.total_impressions == pytest.approx(want["total"])
        assert got.total_clicks == pytest.approx(want["clicks"])
        assert got.avg_position == pytest.approx(want["position"])
        assert got.centroid == pytest.approx(want["centroid"], abs=1e-5)


def test_position_is_a_plain_mean_without_impressions():
    embeddings = np.array([[1, 0], [1, 0.01]], dtype=np.float32)
    [cluster] = cluster_keywords(rows_for([("x", 0, 2.0), ("y", 0, 6.0)]), embeddings, eps=0.01, min_samples=2)
    assert cluster.avg_position == 4.0


def test_empty_and_mismatched_inputs():
    assert cluster_keywords([], np.zeros((0, 4), dtype=np.float32), eps=0.3, min_samples=2) == []
    with pytest.raises(ValueError, match="rows but"):
        cluster_keywords(rows_for([("x", 1, 1)]), np.zeros((2, 4), dtype=np.float32), eps=0.3, min_samples=2)


def test_exact_zero_distances_are_stored_and_counted():
    graph = radius_graph(DYADIC, 0.1)
    assert graph.nnz == 6 + 4 and (graph.data == 0).all()  # self pairs, rows 0/2 and 1/4 both ways
    labels = DBSCAN(eps=0.1, min_samples=2, metric="precomputed").fit(graph).labels_
    assert list(labels) == [0, 1, 0, -1, 1, -1]
