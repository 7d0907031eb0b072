import math
from dataclasses import dataclass

import numpy as np
import pytest

from pageperfect.analysis.clustering import Cluster
from pageperfect.analysis.gaps import SCORES, analyze_gaps, legacy_score, striking_score


def test_legacy_score_matches_the_old_formula():
    # Position 1: PositionScore = 1 / (1 + e^-4.5) = 0.98901.
    assert legacy_score(1, 0) == pytest.approx(0.7 * 0.98901, abs=1e-4)
    assert legacy_score(1, 999) == pytest.approx(0.7 * 0.98901 + 0.3 * 0.3, abs=1e-4)
    assert legacy_score(10, 99) == pytest.approx(0.35 + 0.06)
    positions = [legacy_score(p, 1000) for p in (1, 5, 10, 20, 50)]
    assert positions == sorted(positions, reverse=True)  # it peaks at the top


def test_striking_score_peaks_in_striking_distance():
    grid = [p / 4 for p in range(4, 401)]
    values = [striking_score(p, 10_000) for p in grid]
    best = grid[int(np.argmax(values))]
    assert 4 <= best <= 20
    top = max(values)
    for position in (5, 8, 12, 16, 20):
        assert striking_score(position, 10_000) > 0.7 * top
    assert striking_score(1, 10_000) < 0.1 * top
    assert striking_score(2, 10_000) < 0.2 * top
    assert striking_score(50, 10_000) < 0.05 * top
    assert striking_score(35, 10_000) < 0.2 * top


def test_striking_score_grows_with_impressions_within_bounds():
    values = [striking_score(10, i) for i in (0, 10, 1_000, 100_000, 10**9)]
    assert values[0] == 0
    assert values == sorted(values)
    assert all(0 <= v <= 1 for v in values)
    assert values[-1] == pytest.approx(1.0, abs=0.02)
    assert all(0 <= striking_score(p, i) <= 1 for p in (1, 3, 9, 100, 1000) for i in (0, 5, 1e12))
    assert set(SCORES) == {"striking", "legacy"}


@dataclass
class Seg:
    segment_id: str
    heading_path: list[str]
    text: str
    heading_level: int = 2  # under a section heading; 1 under the page's root alone


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def cluster(cluster_id: int, centroid: np.ndarray, impressions: float, position: float) -> Cluster:
    return Cluster(
        cluster_id=cluster_id,
        representative=f"q{cluster_id}",
        keywords=[f"q{cluster_id}", f"q{cluster_id} b"],
        member_indices=[0, 1],
        size=2,
        total_impressions=impressions,
        avg_impressions=impressions / 2,
        total_clicks=0,
        avg_position=position,
        centroid=centroid,
    )


SEGMENTS = [
    Seg("s-light", ["Care", "Light"], "light text"),
    Seg("s-water", ["Care", "Water"], "water text"),
    Seg("s-soil", ["Care", "Soil"], "soil text"),
]
SEGMENT_VECTORS = np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0)])


def toy_clusters() -> list[Cluster]:
    return [
        cluster(0, unit(1, 0.1, 0, 0), 5000, 2.0),  # about light: covered
        cluster(1, unit(0, 0, 0, 1), 1000, 12.0),  # about nothing on the page: gap
        cluster(2, unit(0.6, 0, 0, 0.8), 300, 8.0),  # half light, half elsewhere: cosine 0.6
        cluster(3, unit(0.1, 0, 0.2, 1), 50, 40.0),  # mostly elsewhere: gap, low opportunity
    ]


def test_analyze_gaps_matches_ranks_and_covers():
    report = analyze_gaps(toy_clusters(), SEGMENT_VECTORS, SEGMENTS, threshold=0.7)
    by_id = {g.cluster_id: g for g in report.gaps}
    assert [g.cluster_id for g in report.gaps if g.has_gap] == [1, 2, 3]
    assert [g.cluster_id for g in report.gaps] == [1, 2, 3, 0]  # gaps first, then covered
    opportunities = [g.opportunity_score for g in report.gaps if g.has_gap]
    assert opportunities == sorted(opportunities, reverse=True)

    covered = by_id[0]
    assert not covered.has_gap
    assert covered.best_match.segment_id == "s-light"
    assert covered.best_match.heading_path == ["Care", "Light"]
    assert covered.best_match.similarity == pytest.approx(float(unit(1, 0.1, 0, 0)[0]), abs=1e-6)
    assert [m.segment_id for m in covered.top_matches] == ["s-light", "s-water", "s-soil"]
    assert by_id[2].best_match.similarity == pytest.approx(0.6, abs=1e-6)
    assert by_id[2].best_match.segment_id == "s-light"
    assert by_id[3].top_matches[0].segment_id == "s-soil"
    sims = [m.similarity for m in by_id[3].top_matches]
    assert sims == sorted(sims, reverse=True) and len(sims) == 3

    assert report.coverage_score == pytest.approx(5000 / 6350)
    assert report.threshold == 0.7 and report.score == "striking"

    lenient = analyze_gaps(toy_clusters(), SEGMENT_VECTORS, SEGMENTS, threshold=0.5)
    assert {g.cluster_id for g in lenient.gaps if g.has_gap} == {1, 3}


def test_score_choice_changes_the_ranking():
    clusters = [cluster(0, unit(0, 0, 0, 1), 10_000, 1.5), cluster(1, unit(0, 0, 0, 1), 2_000, 9.0)]
    striking = analyze_gaps(clusters, SEGMENT_VECTORS, SEGMENTS, threshold=0.7, score="striking")
    legacy = analyze_gaps(clusters, SEGMENT_VECTORS, SEGMENTS, threshold=0.7, score="legacy")
    assert [g.cluster_id for g in striking.gaps] == [1, 0]
    assert [g.cluster_id for g in legacy.gaps] == [0, 1]
    assert legacy.gaps[0].opportunity_score == pytest.approx(legacy_score(1.5, 10_000))
    with pytest.raises(ValueError, match="unknown score"):
        analyze_gaps(clusters, SEGMENT_VECTORS, SEGMENTS, threshold=0.7, score="magic")


def test_page_without_segments_covers_nothing():
    report = analyze_gaps(toy_clusters(), np.zeros((0, 4), dtype=np.float32), [], threshold=0.5)
    assert all(g.has_gap and g.best_match is None and g.top_matches == [] for g in report.gaps)
    assert report.coverage_score == 0.0


def test_coverage_without_impressions_and_without_clusters():
    clusters = [cluster(0, unit(1, 0, 0, 0), 0, 5), cluster(1, unit(0, 0, 0, 1), 0, 5)]
    assert analyze_gaps(clusters, SEGMENT_VECTORS, SEGMENTS, threshold=0.5).coverage_score == 0.5
    empty = analyze_gaps([], SEGMENT_VECTORS, SEGMENTS, threshold=0.5)
    assert empty.gaps == [] and empty.coverage_score == 1.0


def test_dimension_mismatch_is_an_error():
    with pytest.raises(ValueError, match="dims"):
        analyze_gaps([cluster(0, unit(1, 0, 0), 1, 5)], SEGMENT_VECTORS, SEGMENTS, threshold=0.5)


def test_few_segments_give_fewer_top_matches():
    report = analyze_gaps(toy_clusters()[:1], SEGMENT_VECTORS[:2], SEGMENTS[:2], threshold=0.5)
    assert len(report.gaps[0].top_matches) == 2
    assert math.isclose(report.gaps[0].best_match.similarity, float(unit(1, 0.1, 0, 0)[0]), abs_tol=1e-6)


def test_lexical_similarity_is_the_share_of_query_words_a_segment_holds():
    segments = [
        Seg("intro", ["Monstera Care"], "The monstera is an easy plant.", heading_level=1),
        Seg(
            "repot",
            ["Monstera Care", "Repotting"],
            "Repot a monstera every two years, when it is root bound and the roots circle the pot. " * 3,
        ),
    ]
    clusters = [
        cluster(0, unit(1, 0), 100, 5),
        cluster(1, unit(1, 0), 100, 5),
        cluster(2, unit(1, 0), 100, 5),
    ]
    clusters[0].keywords = ["monstera root bound", "repotting a monstera"]  # every word in the long section
    clusters[1].keywords = ["monstera yellow leaves"]  # only the topic word
    clusters[2].keywords = ["the and of"]  # no content words at all
    report = analyze_gaps(clusters, np.zeros((2, 2), dtype=np.float32), segments, threshold=0.6, similarity="lexical")
    by_id = {g.cluster_id: g for g in report.gaps}
    assert by_id[0].best_match.segment_id == "repot" and by_id[0].best_match.similarity == pytest.approx(1.0)
    assert not by_id[0].has_gap
    # Words are weighed by rarity among the page's 4 queries: "monstera" is in 3 of them.
    rarity = lambda df: math.log((1 + 4) / (1 + df)) + 1  # noqa: E731
    assert by_id[1].best_match.similarity == pytest.approx(rarity(3) / (rarity(3) + 2 * rarity(1)), rel=1e-5)
    assert by_id[1].has_gap
    assert by_id[2].best_match.similarity == 0 and by_id[2].has_gap
    assert [m.segment_id for m in by_id[1].top_matches] == ["intro", "repot"]  # ties keep page order


def test_lexical_similarity_averages_over_the_cluster_queries():
    segments = [Seg("a", [], "feed the sourdough starter daily")]
    group = cluster(0, unit(1, 0), 100, 5)
    group.keywords = ["feed sourdough starter", "sourdough discard"]  # all words, and the common word only
    report = analyze_gaps([group], np.zeros((1, 2), dtype=np.float32), segments, threshold=0.5, similarity="lexical")
    common, rare = 1.0, math.log(3 / 2) + 1  # "sourdough" is in both queries, "discard" in one
    assert report.gaps[0].best_match.similarity == pytest.approx((1 + common / (common + rare)) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="unknown similarity"):
        analyze_gaps([group], np.zeros((1, 2), dtype=np.float32), segments, threshold=0.5, similarity="fuzzy")


def test_a_missing_rare_word_costs_more_than_a_missing_common_one():
    segments = [Seg("a", [], "fiddle leaf fig watering"), Seg("b", [], "brown spots on leaves")]
    near, far = cluster(0, unit(1, 0), 100, 5), cluster(1, unit(1, 0), 100, 5)
    near.keywords = ["fiddle leaf fig watering"]
    far.keywords = ["fiddle leaf fig brown spots", "fiddle leaf fig repotting", "fiddle leaf fig light"]
    report = analyze_gaps(
        [near, far], np.zeros((2, 2), dtype=np.float32), segments, threshold=0.6, similarity="lexical"
    )
    by_id = {g.cluster_id: g for g in report.gaps}
    # The page's own subject ("fiddle leaf fig") alone does not cover a query about something else.
    assert not by_id[0].has_gap and by_id[1].has_gap


@pytest.mark.parametrize("similarity", ["cosine", "lexical"])
def test_blocked_matching_gives_the_same_report(similarity: str, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(3)
    words = "water light soil repot monstera leaves yellow cat pot root bark mix sun window".split()
    segments = [Seg(f"s{i}", ["H"], " ".join(rng.choice(words, 12))) for i in range(7)]
    vectors = rng.normal(size=(7, 16)).astype(np.float32)
    clusters = []
    for i in range(40):
        c = cluster(i, unit(*rng.normal(size=16)), float(rng.integers(1, 1000)), float(rng.uniform(1, 40)))
        c.keywords = [" ".join(rng.choice(words, 3)) for _ in range(int(rng.integers(1, 4)))]
        clusters.append(c)
    threshold = {"cosine": 0.3, "lexical": 0.9}[similarity]
    whole = analyze_gaps(clusters, vectors, segments, threshold=threshold, similarity=similarity)
    monkeypatch.setattr("pageperfect.analysis.gaps.BLOCK_CELLS", 7 * 3)
    blocked = analyze_gaps(clusters, vectors, segments, threshold=threshold, similarity=similarity)
    # Same matches and decisions; float32 products of other shapes may differ in the last bits.
    assert [(g.cluster_id, g.has_gap, [m.segment_id for m in g.top_matches]) for g in blocked.gaps] == [
        (g.cluster_id, g.has_gap, [m.segment_id for m in g.top_matches]) for g in whole.gaps
    ]
    sims = lambda report: [m.similarity for g in report.gaps for m in g.top_matches]  # noqa: E731
    assert np.allclose(sims(blocked), sims(whole), atol=1e-6)
    assert 0 < sum(g.has_gap for g in whole.gaps) < len(whole.gaps)


def test_lexical_similarity_leaves_out_the_page_root_every_segment_shares():
    root = "Fig Care: Watering and Toxicity"
    segments = [
        Seg("intro", [root], "Figs like bright rooms.", heading_level=1),
        Seg("water", [root, "Watering"], "Water it weekly."),
    ]
    clusters = [cluster(0, unit(1, 0), 100, 5), cluster(1, unit(1, 0), 100, 5)]
    clusters[0].keywords, clusters[1].keywords = ["toxicity"], ["watering"]
    report = analyze_gaps(clusters, np.zeros((2, 2), dtype=np.float32), segments, threshold=0.6, similarity="lexical")
    by_id = {g.cluster_id: g for g in report.gaps}
    assert by_id[0].best_match.similarity == 0 and by_id[0].has_gap  # only the root has the word
    assert by_id[1].best_match.segment_id == "water" and not by_id[1].has_gap
    assert by_id[1].best_match.heading_path == [root, "Watering"]  # the place keeps its root
