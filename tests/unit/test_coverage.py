from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import sparse

from pageperfect.analysis.clustering import clusters_from_labels, summarize_members
from pageperfect.analysis.coverage import CoverageModel, Evidence, decide, passages_of, sigmoid, split_sentences
from pageperfect.analysis.gaps import analyze_evidence
from pageperfect.models import KeywordRow

MODEL = CoverageModel(semantic=2.0, semantic_full=1.0, lexical=3.0, bias=-3.0, threshold=0.5, split_margin=1.5)


def seg(i, text, path=("Care guide",), kind="paragraph", level=2):
    return SimpleNamespace(segment_id=f"s{i}", heading_path=list(path), text=text, kind=kind, heading_level=level)


def test_passages_are_segments_and_the_sentences_of_long_ones():
    segments = [
        seg(0, "Water it weekly. Let the soil dry out first. Never leave it standing in water."),
        seg(1, "Bright light."),
        seg(2, "Care guide", kind="heading"),
    ]
    found = passages_of(segments)
    assert [p.kind for p in found] == ["segment", "sentence", "sentence", "sentence", "segment", "segment"]
    assert found[1].text == "Water it weekly." and found[1].embed_text == "Care guide: Water it weekly."
    assert found[-1].embed_text == "Care guide"  # a heading embeds alone
    assert [p.kind for p in passages_of(segments, ("segment",))] == ["segment"] * 3
    assert split_sentences("One two three. Four five six! Ok go.") == ["One two three.", "Four five six!"]


def test_the_page_root_names_the_place_but_takes_no_part_in_matching():
    root = "Monstera Care: Light, Watering and Toxicity"
    segments = [
        seg(0, "Monstera is a climbing aroid.", path=(root,), level=1),
        seg(1, "Water it weekly.", path=(root, "Watering")),
        seg(2, "Prune in spring.", path=(root, "Watering", "Pruning"), level=3),
    ]
    intro, water, prune = passages_of(segments, ("segment",))
    assert intro.heading_path == [root] and intro.embed_text == "Monstera is a climbing aroid."
    assert intro.words_text == "Monstera is a climbing aroid."
    assert water.embed_text == "Watering: Water it weekly." and water.words_text == "Watering Water it weekly."
    assert prune.embed_text == "Pruning: Prune in spring." and prune.heading_path == [root, "Watering", "Pruning"]
    # A word of the root ("toxicity") is not found in every passage: no passage answers the query.
    queries = ["monstera toxicity", "monstera watering", "monstera pruning", "monstera light"]
    vectors = np.eye(4, 3, dtype=np.float32) + 0.01
    ev = Evidence(
        queries, vectors, vectors, frozenset({"monstera"}), [intro, water, prune], np.eye(3, 3, dtype=np.float32), MODEL
    )
    lexical = ev.per_query().lexical
    assert lexical[0] == 0.0 and lexical[1] == 1.0 and lexical[2] == 1.0


def _evidence(queries, q_vectors, segments, p_vectors, subject=frozenset(), stripped=None, model=MODEL):
    passages = passages_of(segments, ("segment",))
    return Evidence(
        queries, q_vectors, q_vectors if stripped is None else stripped, subject, passages, p_vectors, model
    )


def test_lexical_signal_is_the_rarity_weighted_share_of_distinctive_words_in_one_passage():
    queries = ["monstera brown spots", "monstera yellow leaves", "monstera", "monstera light"]
    segments = [seg(0, "Brown spots come from sunburn.", path=("Problems",)), seg(1, "Yellow is normal.")]
    vectors = np.eye(4, 3, dtype=np.float32) + 0.01
    ev = _evidence(queries, vectors, segments, np.eye(2, 3, dtype=np.float32), subject=frozenset({"monstera"}))
    per = ev.per_query()
    assert per.lexical[0] == pytest.approx(1.0)  # "brown" and "spot" both in segment 0
    assert per.lexical[1] == pytest.approx(0.5)  # "yellow" in segment 1, "leav" nowhere; equal rarity
    assert per.lexical[2] == 1.0  # only the subject: the page is about it
    assert per.lexical[3] == 0.0
    assert np.allclose(per.logit, MODEL.logit(per.semantic, per.semantic_full, per.lexical))
    words = ev.words_for([1], ev.passages_for([1])[0])
    assert words == {"found": ["yellow"], "missing": ["leaves"]}


def test_a_compound_the_passage_writes_open_counts_for_the_querys_closed_form():
    queries = ["hotel peephole safety", "hotel checkin time", "hotel minibar"]
    segments = [seg(0, "Always look through the peep hole; is it safe?"), seg(1, "You can check in at noon.")]
    vectors = np.eye(3, 3, dtype=np.float32) + 0.01
    ev = _evidence(queries, vectors, segments, np.eye(2, 3, dtype=np.float32), subject=frozenset({"hotel"}))
    lexical = ev.per_query().lexical
    assert lexical[0] == pytest.approx(0.5)  # "peephole" in segment 0 as "peep hole"; "safety" is not "safe"
    assert lexical[1] == pytest.approx(0.5)  # "checkin" as "check in"; "time" nowhere
    assert lexical[2] == 0.0  # no pair of words makes "minibar"
    assert ev.words_for([0], ev.passages_for([0])[0]) == {"found": ["peephole"], "missing": ["safety"]}


def test_passage_and_vector_counts_must_agree():
    with pytest.raises(ValueError, match="passage vectors"):
        _evidence(["a"], np.ones((1, 3)), [seg(0, "a b c")], np.ones((2, 3)))


def _links(n, *pairs):
    """A symmetric link graph over n queries with the given (i, j) links."""
    graph = np.zeros((n, n))
    for i, j in pairs:
        graph[i, j] = graph[j, i] = 1.0
    matrix = sparse.csr_matrix(graph)
    return lambda: matrix


def test_a_cluster_whose_queries_clearly_disagree_is_split():
    evidence = SimpleNamespace(logit=np.array([3.0, 2.5, -3.0, -2.0, 0.2, -0.4]))
    weights = np.ones(6)
    links = _links(6, (0, 1), (2, 3), (1, 2), (4, 5))
    (split,), (kept,) = (
        decide([[0, 1, 2, 3]], weights, evidence, MODEL, links=links),
        decide([[4, 5]], weights, evidence, MODEL, links=links),
    )
    assert [p.members for p in split] == [[0, 1], [2, 3]]
    assert [p.has_gap for p in split] == [False, True] and all(p.split_from == 0 for p in split)
    assert len(kept) == 1 and kept[0].members == [4, 5]
    assert kept[0].coverage == pytest.approx(sigmoid(-0.1)) and kept[0].has_gap
    # The graph is built only when some cluster's queries disagree.
    (agreed,) = decide([[4, 5]], weights, evidence, MODEL, links=lambda: pytest.fail("graph built without need"))
    assert agreed[0].members == [4, 5]
    # Impressions weigh the verdict.
    (heavy,) = decide([[4, 5]], np.array([0, 0, 0, 0, 9.0, 1.0]), evidence, MODEL, links=links)
    assert not heavy[0].has_gap
    # The split follows the threshold, not logit 0.
    strict = replace(MODEL, threshold=sigmoid(2.8))
    (parts,) = decide([[0, 1, 2, 3]], weights, evidence, strict, links=links)
    assert [p.members for p in parts] == [[0, 1, 2, 3]]  # nothing clearly above 2.8 + 1.5


def test_a_part_without_a_link_among_its_queries_is_other_wordings_and_stays_in_the_cluster():
    evidence = SimpleNamespace(logit=np.array([3.0, 2.5, 2.0, -3.0, -2.5]))
    weights = np.ones(5)
    # The two unanswered queries are each linked to answered ones, not to each other: no intent of their own.
    apart = _links(5, (0, 1), (1, 2), (0, 3), (2, 4))
    (whole,) = decide([[0, 1, 2, 3, 4]], weights, evidence, MODEL, links=apart)
    assert len(whole) == 1 and whole[0].members == [0, 1, 2, 3, 4] and not whole[0].has_gap
    assert whole[0].evidence["not_split"] == [3, 4] and whole[0].split_from is None
    # Linked to each other, they are an intent the page misses.
    together = _links(5, (0, 1), (1, 2), (0, 3), (3, 4))
    (split,) = decide([[0, 1, 2, 3, 4]], weights, evidence, MODEL, links=together)
    assert [p.members for p in split] == [[0, 1, 2], [3, 4]] and [p.has_gap for p in split] == [False, True]
    # A single query is never an intent of its own under this rule; without it, it splits off.
    (alone,) = decide([[0, 1, 2, 3]], weights, evidence, MODEL, links=together)
    assert [p.members for p in alone] == [[0, 1, 2, 3]] and alone[0].evidence["not_split"] == [3]
    unlinked = replace(MODEL, split_needs_links=False)
    (loose,) = decide([[0, 1, 2, 3]], weights, evidence, unlinked)
    assert [p.members for p in loose] == [[0, 1, 2], [3]]
    (ignored,) = decide([[0, 1, 2, 3]], weights, evidence, unlinked, links=together)  # the rule is off
    assert [p.members for p in ignored] == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="link graph"):
        decide([[0, 1]], weights, evidence, MODEL)


def test_analyze_evidence_explains_and_ranks():
    queries = ["monstera toxic to cats", "monstera poisonous to cats", "monstera light", "monstera bright light"]
    rows = [KeywordRow(query=q, impressions=100 * (i + 1), position=8) for i, q in enumerate(queries)]
    q_vectors = np.array([[1, 0, 0], [0.98, 0.05, 0], [0, 1, 0], [0.05, 0.98, 0]], dtype=np.float32)
    segments = [seg(0, "Give it bright light near a window.", path=("Light",)), seg(1, "Repot every spring.")]
    p_vectors = np.array([[0, 1, 0], [0, 0, 1]], dtype=np.float32)
    ev = _evidence(queries, q_vectors, segments, p_vectors, subject=frozenset({"monstera"}))
    clusters = clusters_from_labels(rows, q_vectors, np.array([0, 0, 1, 1]))
    report = analyze_evidence(
        clusters,
        np.array([r.impressions for r in rows]),
        ev,
        summarize=lambda part: summarize_members(rows, q_vectors, part),
    )
    gap, covered = report.gaps
    assert gap.has_gap and not covered.has_gap
    assert set(gap.keywords) == {"monstera toxic to cats", "monstera poisonous to cats"}
    assert gap.decided_by == "evidence" and 0 <= gap.coverage < 0.5 < covered.coverage
    assert sorted(gap.explanation["words"]["missing"]) == ["cats", "poisonous", "toxic"]
    assert covered.explanation["passages"][0]["segment_id"] == "s0"
    assert sorted(covered.explanation["words"]["found"]) == ["bright", "light"]
    assert report.coverage_score == pytest.approx(700 / 1000)
    assert report.method == "evidence"


def test_a_wording_kept_in_its_cluster_is_named_in_the_explanation():
    queries = ["monstera light", "monstera bright light", "monstera light window", "monstera toxic cats"]
    rows = [KeywordRow(query=q, impressions=100) for q in queries]
    q_vectors = np.array([[0, 1, 0], [0.05, 1, 0], [0, 1, 0.05], [1, 0, 0]], dtype=np.float32)
    segments = [seg(0, "Give it bright light near a window.", path=("Light",))]
    ev = _evidence(queries, q_vectors, segments, np.array([[0, 1, 0]], dtype=np.float32))
    clusters = clusters_from_labels(rows, q_vectors, np.zeros(4, dtype=int))  # one cluster, one stray query
    assert ev.per_query().logit[3] < -MODEL.split_margin < MODEL.split_margin < ev.per_query().logit[:3].min()
    report = analyze_evidence(clusters, np.ones(4), ev, summarize=lambda part: summarize_members(rows, q_vectors, part))
    (kept,) = report.gaps
    assert not kept.has_gap and len(kept.keywords) == 4 and "split_from" not in kept.explanation
    assert kept.explanation["not_split"]["queries"] == ["monstera toxic cats"]
    assert kept.explanation["not_split"]["read_as"] == "not answered"


def test_near_identical_gaps_are_merged_into_one():
    queries = ["fig toxic to cats", "fig safe for cats", "fig light"]
    rows = [KeywordRow(query=q, impressions=10) for q in queries]
    q_vectors = np.array([[1, 0, 0], [0.999, 0.04, 0], [0, 1, 0]], dtype=np.float32)
    ev = _evidence(queries, q_vectors, [seg(0, "Light matters.")], np.array([[0, 1, 0]], dtype=np.float32))
    clusters = clusters_from_labels(rows, q_vectors, np.array([0, 1, 2]))  # the two cat queries apart
    report = analyze_evidence(clusters, np.ones(3), ev, summarize=lambda part: summarize_members(rows, q_vectors, part))
    gaps = [g for g in report.gaps if g.has_gap]
    assert len(gaps) == 1 and sorted(gaps[0].keywords) == ["fig safe for cats", "fig toxic to cats"]
    assert gaps[0].explanation["merged"]
    assert sum(len(g.keywords) for g in report.gaps) == 3  # every query once


def test_windows_are_runs_of_adjacent_sentences_under_the_same_headings():
    segments = [
        seg(0, "Fill the jar with gravel. Add a layer of charcoal."),
        seg(1, "Then add the potting soil."),
        seg(2, "Moss", path=("Care guide", "Moss"), kind="heading"),
        seg(3, "Press moss on top of the soil.", path=("Care guide", "Moss")),
    ]
    windows = [p for p in passages_of(segments, ("segment", "window")) if p.kind == "window"]
    assert [w.text for w in windows] == [
        "Add a layer of charcoal. Then add the potting soil.",  # across two paragraphs
        "Fill the jar with gravel. Add a layer of charcoal. Then add the potting soil.",
    ]  # the first segment's two sentences are that segment already; none crosses the "Moss" heading
    assert windows[0].segment_id == "s0" and windows[0].embed_text.startswith("Care guide: Add a layer")
    assert not [p for p in passages_of(segments) if p.kind == "window"]  # only when asked for


def test_a_huge_page_keeps_every_segment_and_a_bounded_number_of_sentences_and_windows():
    from pageperfect.analysis.coverage import MAX_FINE_PASSAGES

    text = "This sentence has enough words in it. Another sentence follows with words here. A third one ends it."
    segments = [
        SimpleNamespace(segment_id=str(i), heading_path=["Title"], heading_level=1, kind="paragraph", text=text)
        for i in range(5_000)
    ]
    passages = passages_of(segments, ("segment", "sentence", "window"))
    assert [p.segment_id for p in passages if p.kind == "segment"] == [s.segment_id for s in segments]
    fine = [p for p in passages if p.kind != "segment"]
    assert len(fine) == MAX_FINE_PASSAGES
    assert fine[0].segment_id == "0"  # the page's first sentences and windows are the ones kept
