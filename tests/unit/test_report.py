"""The HTML report: escaping of page text, the projection, the outline's matches, the side-by-side diff."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from datetime import datetime, UTC

import numpy as np

from pageperfect.services.report import CSP, ReportData, best_clusters, project_2d, render_report, side_by_side

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _data(**overrides) -> ReportData:
    rng = np.random.default_rng(7)
    centroids = {0: rng.normal(size=16), 1: rng.normal(size=16), 2: rng.normal(size=16)}
    segments = [
        {
            "segment_id": "s0",
            "position": 0,
            "kind": "heading",
            "heading_level": 1,
            "heading_path": ["Care " + HOSTILE],
            "text": "Care " + HOSTILE,
        },
        {
            "segment_id": "s1",
            "position": 1,
            "kind": "paragraph",
            "heading_level": 1,
            "heading_path": ["Care " + HOSTILE],
            "text": "Water when the top inch is dry. " + HOSTILE,
        },
    ]
    vectors = np.vstack([centroids[0] + 0.01, centroids[2] + 0.01]).astype(np.float32)
    gap = {
        "cluster_id": 0,
        "representative": "brown spots " + HOSTILE,
        "keywords": ["brown spots", HOSTILE],
        "total_impressions": 900.0,
        "avg_position": 11.2,
        "has_gap": True,
        "opportunity_score": 0.8,
        "best_match": {"segment_id": "s1", "heading_path": [], "text": HOSTILE, "similarity": 0.12},
        "top_matches": [],
    }
    gap2 = dict(
        gap,
        cluster_id=1,
        representative="repotting",
        keywords=["repot"],
        opportunity_score=0.3,
        total_impressions=100.0,
    )
    covered = dict(
        gap,
        cluster_id=2,
        representative="watering",
        keywords=["water"],
        has_gap=False,
        opportunity_score=0.1,
        total_impressions=4000.0,
    )
    result = {
        "page": {"url": 'https://example.com/a?b=<x>&c="d"', "title": "Figs " + HOSTILE, "meta_description": None},
        "providers": {
            "embedding": {"provider": "hashing", "model": "h"},
            "llm": {"provider": "brief", "model": None},
            "offline": True,
            "note": "offline " + HOSTILE,
        },
        "stats": {
            "segments": 2,
            "keywords": 4,
            "clusters": 3,
            "gaps": 2,
            "coverage_score": 0.8,
            "gap_threshold": 0.3,
            "score": "striking",
        },
        "clusters": [],
        "gaps": [gap, gap2, covered],
        "drafts": [
            {
                "cluster_id": 0,
                "kind": "brief",
                "action": "insert_after",
                "target_segment_id": "s1",
                "suggested_heading": "Why " + HOSTILE,
                "original": "Water weekly. Keep it warm.",
                "draft": "Water weekly. Keep it bright.\n\nBrown spots " + HOSTILE,
                "diff": "",
                "model": None,
                "prompt_version": "v",
            }
        ],
    }
    values = dict(
        job={
            "id": "job-1",
            "url": result["page"]["url"],
            "status": "completed",
            "created_at": datetime.now(UTC),
            "completed_at": datetime.now(UTC),
        },
        result=result,
        segments=segments,
        segment_vectors=vectors,
        centroids=centroids,
    )
    values.update(overrides)
    return ReportData(**values)


def test_page_text_is_escaped_everywhere():
    page = render_report(_data())
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert 'href="https://example.com/a?b=&lt;x&gt;&amp;c=&quot;d&quot;"' in page


def test_loads_nothing_from_outside():
    page = render_report(_data())
    assert f'content="{CSP}"' in page and "default-src 'none'" in CSP
    # No tag that fetches anything, no resource attribute: only the link to the analyzed page itself.
    tags = _tags(page)
    assert not {t for t, _ in tags} & {
        "script",
        "img",
        "link",
        "iframe",
        "object",
        "embed",
        "image",
        "use",
        "foreignobject",
    }
    urls = [(t, a, v) for t, attrs in tags for a, v in attrs if a in ("src", "srcset", "href", "xlink:href", "action")]
    assert urls == [("a", "href", 'https://example.com/a?b=<x>&c="d"')]


def _tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collector().feed(page)
    return found


def test_charts_have_a_mark_per_gap_cluster_and_segment():
    page = render_report(_data())
    bars = page[page.index('class="chart bars"') :]
    bars = bars[: bars.index("</svg>")]
    assert bars.count("<rect") == 2  # two gaps, the covered cluster is not a bar
    scatter = page[page.index('class="chart scatter"') :]
    scatter = scatter[: scatter.index("</svg>")]
    assert scatter.count("<circle") == 3 and scatter.count('class="segment"') == 2
    assert scatter.count('class="cluster gap"') == 2 and scatter.count('class="cluster covered"') == 1


def test_no_gaps_and_no_segments_still_render():
    data = _data(segments=[], segment_vectors=np.zeros((0, 16), dtype=np.float32))
    for gap in data.result["gaps"]:
        gap["has_gap"] = False
    data.result["drafts"] = []
    page = render_report(data)
    assert "No gaps" in page and "No segments" in page and "No drafts" in page


def test_projection_keeps_the_largest_spread_on_the_first_axis():
    points = np.array([[0, 0, 0], [10, 0.1, 0], [20, 0, 0.1], [30, 0.1, 0.1]], dtype=float)
    coords = project_2d(points)
    assert coords.shape == (4, 2)
    assert np.ptp(coords[:, 0]) > 20 and np.ptp(coords[:, 1]) < 1
    assert project_2d(np.ones((3, 5))).tolist() == [[0, 0]] * 3  # no spread: all on the origin
    assert project_2d(np.zeros((0, 5))).shape == (0, 2)


def test_each_segment_gets_its_nearest_cluster():
    data = _data()
    matches = best_clusters(data.segment_vectors, data.centroids)
    assert [m[0] for m in matches] == [0, 2]
    assert all(m[1] > 0.99 for m in matches)


def test_side_by_side_marks_changed_words_and_added_sentences():
    table = side_by_side(
        "Water weekly. Keep it warm.", "Water weekly. Keep it bright.\n\nA new <b>section</b>. Two.\n- a list line"
    )
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]  # after the header
    assert rows[0] == '<td class="eq">Water weekly.</td><td class="eq">Water weekly.</td>'
    assert rows[1].startswith('<td class="del">Keep it <del>warm.</del></td>')
    # Lines and paragraphs of the draft stay as they were written.
    assert rows[1].endswith(
        "Keep it <ins>bright.</ins>\n\n<ins>A new &lt;b&gt;section&lt;/b&gt;.</ins> "
        "<ins>Two.</ins>\n<ins>- a list line</ins></td>"
    )


def test_side_by_side_of_a_pure_insertion():
    table = side_by_side("", "New heading\n\nNew text.")
    assert re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:] == [
        '<td class="none"></td><td class="ins">New heading\n\nNew text.</td>'
    ]


def test_a_gap_says_which_of_its_wordings_the_page_answers():
    data = _data()
    gap = data.result["gaps"][0]
    gap.update(
        coverage=0.2,
        decided_by="evidence",
        explanation={
            "not_split": {"queries": ["brown leaf tips", HOSTILE], "read_as": "answered", "reason": "other wordings"}
        },
    )
    html = render_report(data)
    assert "answered as worded in 2 of its queries (brown leaf tips, &lt;script&gt;" in html
    assert HOSTILE not in html
    # A verdict the judge turned: the wordings were read as not answered, and are not called answered.
    gap["explanation"]["not_split"]["read_as"] = "not answered"
    assert "answered as worded" not in render_report(data)
