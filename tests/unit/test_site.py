"""The site analysis on a fixture site whose cases are known, offline (all-MiniLM-L6-v2), and its parts."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pageperfect.analysis.defaults import defaults_for
from pageperfect.analysis.site import LINK_FACTOR, analyze_site, site_intents
from tests.helpers import site_fixture
from tests.helpers.site_fixture import ALONE, CANNIBALIZED, LINK, SHARED_WORDS, analyze_offline, path_of

BASE = "https://bean-notes.example"


def name_of(url: str) -> str:
    return url.removeprefix(BASE + "/coffee/").removesuffix(".html")


@pytest.fixture(scope="module")
def site_pages():
    from pageperfect.analysis.minilm import MiniLMEmbedder

    return asyncio.run(analyze_offline(MiniLMEmbedder(), BASE))


@pytest.fixture(scope="module")
def result(site_pages):
    return analyze_site(site_pages, defaults_for("minilm").coverage)


def test_finds_the_one_cannibalization_case(result):
    assert len(result.cannibalization) == 1, [c["intent"] for c in result.cannibalization]
    case = result.cannibalization[0]
    assert {name_of(p["url"]) for p in case["pages"]} == CANNIBALIZED
    assert "how to make cold brew at home" in case["queries"]
    guide, recipe = case["pages"]  # the leader first
    assert name_of(guide["url"]) == "cold-brew-guide" and guide["impressions"] == 2200
    assert recipe["impressions"] == 1900 and recipe["clicks"] == 80
    assert guide["impression_share"] + recipe["impression_share"] == pytest.approx(1.0)
    assert recipe["passage_cosine"] > 0.8  # the two passages say the same thing
    assert case["recommendation"] == "consolidate" and any("redirect" in r for r in case["reasons"])
    assert case["severity"] == pytest.approx(4100 * case["evenness"], rel=1e-3) and case["evenness"] > 0.95


def test_pages_sharing_words_but_not_intent_and_a_page_alone_make_no_case(result):
    in_cases = {name_of(p["url"]) for c in result.cannibalization for p in c["pages"]}
    assert not in_cases & (SHARED_WORDS | {ALONE})
    linked = {name_of(link["from_url"]) for link in result.links} | {name_of(link["to_url"]) for link in result.links}
    assert ALONE not in linked and not linked & SHARED_WORDS


def test_the_gap_another_page_answers_becomes_a_link(result):
    source, target, heading = LINK
    assert [(name_of(x["from_url"]), name_of(x["to_url"])) for x in result.links] == [(source, target)]
    link = result.links[0]
    assert link["anchor_text"] == heading and "french press grind size" in link["queries"]
    # The brief proposes the link, with its anchor text and target, instead of a new section.
    assert link["brief"].startswith("Do not add a section on ")
    assert f'link the words "{heading}" to {link["to_url"]}#{link["to_segment_id"]}' in link["brief"]
    assert link["score"] == pytest.approx(link["original_score"] * LINK_FACTOR, abs=1e-6)
    page = next(p for p in result.pages if name_of(p["url"]) == source)
    gap = next(g for g in page["top_gaps"] if g["cluster_id"] == link["cluster_id"])
    assert gap["fix"] == "link" and gap["link"]["to_segment_id"] == link["to_segment_id"]
    assert gap["score"] < gap["original_score"]
    assert link["to_url"].endswith(path_of(target))


def test_every_page_is_ranked_by_opportunity(result):
    assert len(result.pages) == len(site_fixture.PAGES)
    opportunities = [p["opportunity"] for p in result.pages]
    assert opportunities == sorted(opportunities, reverse=True)


def test_intents_join_close_groups_of_different_pages_only():
    vectors = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0.98, 0.05, 0.1]], dtype=np.float32)
    owners = np.array([0, 0, 1, 2])
    labels = site_intents(vectors, owners, intent_cosine=0.9)
    # 0 and 1 are of one page (its own analysis told them apart); 3 is close to both and joins them.
    assert labels[0] == labels[3] == labels[1] and labels[2] != labels[0]
    assert len(set(site_intents(vectors[:3], np.array([0, 0, 1]), intent_cosine=0.9).tolist())) == 3
    approx = site_intents(vectors, owners, intent_cosine=0.9, approximate=True)
    assert (approx == labels).all()


def _page(name, queries, impressions, vectors, passage_text, passage_vector, *, has_gap=False):
    from pageperfect.analysis.coverage import Passage
    from pageperfect.analysis.site import PageGroup, SitePage

    n = len(queries)
    return SitePage(
        url=f"https://s.example/{name}",
        job_id=f"job-{name}",
        queries=queries,
        impressions=np.asarray(impressions, dtype=np.float64),
        clicks=np.ones(n),
        positions=np.full(n, 5.0),
        query_vectors=np.asarray(vectors, np.float32),
        stripped_vectors=np.asarray(vectors, np.float32),
        subject=frozenset(),
        groups=[PageGroup(0, queries[0], list(range(n)), has_gap, 0.9, 0.5, segment_id=f"{name}-s")],
        passages=[Passage(f"{name}-s", ["Heading"], passage_text, "segment")],
        passage_vectors=np.asarray([passage_vector], dtype=np.float32),
    )


@pytest.mark.parametrize(
    "split, passage, expected",
    [
        ((950, 50), [1, 0, 0], "leave_alone"),  # the leader takes 95 %: little is split
        ((600, 400), [1, 0, 0], "consolidate"),  # the same passage, the intent is all the weaker page has
        ((600, 400), [0.6, 0.8, 0], "differentiate"),  # passages differ (cosine 0.6) but a query is shared
        ((600, 400), [0, 0, 1], "differentiate"),  # passages unlike (cosine 0), but a shared query keeps it a case
    ],
)
def test_recommendations(split, passage, expected):
    a = _page("a", ["shed base", "shed foundation"], [split[0] / 2] * 2, [[1, 0, 0], [0.99, 0.1, 0]], "x", [1, 0, 0])
    b = _page("b", ["shed base"], [split[1]], [[1, 0.05, 0]], "y", passage)
    result = analyze_site([a, b], defaults_for("minilm").coverage)
    assert len(result.cannibalization) == 1
    case = result.cannibalization[0]
    assert case["recommendation"] == expected, case["reasons"]
    assert case["pages"][0]["url"].endswith("/a") and case["reasons"]


def test_intents_that_differ_are_left_alone():
    a = _page("a", ["shed base"], [500], [[1, 0, 0]], "x", [1, 0, 0])
    b = _page("b", ["shed foundation"], [400], [[0.95, 0.3, 0]], "y", [0, 0, 1])
    case = analyze_site([a, b], defaults_for("minilm").coverage).cannibalization[0]
    assert case["recommendation"] == "leave_alone" and "intents differ" in case["reasons"][0]


def test_the_site_report_escapes_page_text(result):
    from dataclasses import asdict

    from pageperfect.services.site_report import render_site_report

    body = {**asdict(result), "site_id": "s-1"}
    body["cannibalization"][0]["intent"] = "<script>alert(1)</script>"
    page = render_site_report(body)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('class="case"') == 1 and page.count('class="link"') == 1
