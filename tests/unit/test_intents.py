import numpy as np
import pytest

from pageperfect.analysis.clustering import cluster_keywords
from pageperfect.analysis.intents import (
    communities,
    distinctive_stems,
    group_queries,
    grouped_share,
    intent_labels,
    link_graph,
    strip_subject,
    subject_stems,
)
from pageperfect.models import KeywordRow

FIG = [
    "is fiddle leaf fig toxic to cats",
    "fiddle leaf fig safe for cats",
    "is fiddle leaf fig poisonous to cats",
    "fiddle leaf fig brown spots",
    "brown spots on fiddle leaf fig leaves",
    "fiddle leaf fig leaves turning brown",
    "how to propagate fiddle leaf fig",
    "fiddle leaf fig propagation",
    "fiddle leaf fig cutting in water",
]
MORE = FIG + ["fiddle leaf fig light", "fiddle leaf fig soil", "repot fiddle leaf fig", "fiddle leaf fig pot size"]


def test_subject_is_what_most_queries_share():
    assert subject_stems(MORE) == {"fiddl", "leaf", "fig"}  # "cat" is in 3 of 13: an aspect, not the subject
    assert subject_stems(FIG[:3]) == frozenset()  # too few queries to tell a subject
    assert {"cat", "brown"} <= subject_stems(FIG)  # 3 of 9 ask about cats: at that share, a shared word
    assert subject_stems(MORE, min_share=0.99) == {"fiddl", "leaf", "fig"}


def test_strip_subject_keeps_what_the_query_asks():
    subject = subject_stems(MORE)
    assert strip_subject("is fiddle leaf fig toxic to cats", subject) == "is toxic to cats"
    # A query that is only the subject asks about the subject: it stays whole.
    assert strip_subject("fiddle leaf fig", subject) == "fiddle leaf fig"
    assert strip_subject("the fiddle leaf fig", subject) == "the fiddle leaf fig"
    assert strip_subject("anything", frozenset()) == "anything"
    assert distinctive_stems("fiddle leaf fig brown spots", subject) == ["brown", "spot"]


def _vectors(groups: list[int], dim: int = 16, noise: float = 0.05, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(groups) + 1, dim))
    return centres[groups] + noise * rng.standard_normal((len(groups), dim))


def test_three_intents_found_whatever_the_order():
    truth = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    vectors = _vectors(truth)
    labels = intent_labels(FIG, vectors, vectors, subject_stems(FIG), neighbors=2, resolution=1.0)
    assert len(set(labels)) == 3
    assert all(len({labels[i] for i in range(9) if truth[i] == t}) == 1 for t in range(3))
    order = [8, 3, 0, 5, 1, 7, 4, 2, 6]
    shuffled = intent_labels(
        [FIG[i] for i in order], vectors[order], vectors[order], subject_stems(FIG), neighbors=2, resolution=1.0
    )
    assert len(set(shuffled)) == 3
    for a in range(9):
        for b in range(9):
            assert (shuffled[a] == shuffled[b]) == (truth[order[a]] == truth[order[b]])


def test_the_same_input_gives_the_same_labels():
    vectors = _vectors([0, 0, 0, 1, 1, 1, 2, 2, 2], noise=0.6)
    runs = {tuple(intent_labels(FIG, vectors, vectors, frozenset(), neighbors=3)) for _ in range(3)}
    assert len(runs) == 1


def test_a_query_like_nothing_stays_alone():
    queries = ["alpha beta", "alpha beta gamma", "zeta"]
    vectors = np.array([[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 0.0, 1.0]])
    labels = intent_labels(queries, vectors, vectors, frozenset(), neighbors=2, min_link=0.2)
    assert labels[0] == labels[1] != labels[2]


def test_link_graph_is_symmetric_and_sums_the_views():
    vectors = _vectors([0, 0, 1, 1])
    graph = link_graph(["a b", "a c", "d e", "d f"], vectors, vectors, frozenset(), neighbors=1)
    dense = graph.toarray()
    assert np.allclose(dense, dense.T)
    assert np.all(np.diag(dense) == 0)
    # 0 and 1 choose each other in both vector views and share "a" in the word view.
    assert dense[0, 1] > dense[0, 2]


def test_communities_of_an_empty_graph_are_singletons():
    from scipy import sparse

    assert list(communities(sparse.csr_matrix((3, 3)))) == [0, 1, 2]


def test_group_queries_keeps_dbscan_available():
    rows = [KeywordRow(query=q, impressions=10 + i) for i, q in enumerate(FIG)]
    vectors = _vectors([0, 0, 0, 1, 1, 1, 2, 2, 2])
    dbscan = group_queries(rows, vectors, None, frozenset(), method="dbscan", eps=0.1, min_samples=2)
    expected = cluster_keywords(rows, vectors, eps=0.1, min_samples=2)
    assert [c.keywords for c in dbscan] == [c.keywords for c in expected]
    intents = group_queries(
        rows,
        vectors,
        vectors,
        subject_stems(FIG),
        method="intents",
        eps=0.1,
        min_samples=2,
        neighbors=2,
        resolution=1.0,
    )
    assert sorted(len(c.keywords) for c in intents) == [3, 3, 3]
    assert grouped_share(intents) == 1.0
    assert all(c.centroid.shape == (16,) and abs(np.linalg.norm(c.centroid) - 1) < 1e-5 for c in intents)
    with pytest.raises(ValueError, match="needs the vectors"):
        group_queries(rows, vectors, None, frozenset(), method="intents", eps=0.1, min_samples=2)
    with pytest.raises(ValueError, match="unknown clustering method"):
        group_queries(rows, vectors, vectors, frozenset(), method="kmeans", eps=0.1, min_samples=2)


def test_no_queries():
    assert len(intent_labels([], np.zeros((0, 4)), np.zeros((0, 4)), frozenset())) == 0
    assert grouped_share([]) == 1.0


def test_refine_splits_a_big_community_only_along_a_clean_cut():
    from scipy import sparse

    from pageperfect.analysis.intents import refine

    def blob(n):
        return np.ones((n, n)) - np.eye(n)

    two = sparse.lil_matrix(np.block([[blob(15), np.zeros((15, 15))], [np.zeros((15, 15)), blob(15)]]))
    two[0, 15] = two[15, 0] = 0.5  # a thin bridge between two tight groups
    two = two.tocsr()
    merged = np.zeros(30, dtype=np.intp)  # as if the first pass had taken them for one
    split = refine(two, merged, largest=20)
    assert len(set(split[:15])) == 1 and len(set(split[15:])) == 1 and split[0] != split[15]
    one = sparse.csr_matrix(blob(30))
    assert set(refine(one, np.zeros(30, dtype=np.intp), largest=20)) == {0}
    assert list(refine(two, merged, largest=40)) == [0] * 30  # small enough: left alone
