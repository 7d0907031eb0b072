"""What `analyze` and the demo print of a finished job: the gap table, then each draft or brief."""

import io

from rich.console import Console

from pageperfect.cli.watch import clip_lines, print_result


def _gap(cluster_id: int, representative: str, score: float, has_gap: bool = True) -> dict:
    return {
        "cluster_id": cluster_id,
        "representative": representative,
        "keywords": [representative],
        "total_impressions": 1000.0,
        "avg_position": 12.0,
        "opportunity_score": score,
        "has_gap": has_gap,
        "coverage": 0.2,
        "decided_by": "embedding",
        "best_match": {"text": "A passage."},
        "explanation": {"words": {"missing": ["toxic"]}},
    }


def _brief(cluster_id: int, heading: str, lines: int) -> dict:
    body = "\n".join(f"line {i} of the brief for {heading}" for i in range(1, lines + 1))
    return {"cluster_id": cluster_id, "kind": "brief", "suggested_heading": heading, "draft": body, "original": ""}


def _printed(result: dict) -> str:
    out = io.StringIO()
    print_result(result, Console(file=out, width=200, color_system=None))
    return out.getvalue()


def _result(drafts: list[dict]) -> dict:
    return {
        "job_id": "j",
        "page": {"url": "http://example.test/", "title": "A page"},
        "stats": {"segments": 3, "keywords": 3, "clusters": 3, "gaps": 2, "coverage_score": 0.5},
        "providers": {"note": None},
        "gaps": [_gap(9, "brown spots", 0.7), _gap(2, "covered thing", 0.6, has_gap=False), _gap(4, "toxic", 0.5)],
        "drafts": drafts,
    }


def test_each_brief_is_named_by_its_gaps_rank_and_printed_whole():
    text = _printed(_result([_brief(9, "Brown spots", 12), _brief(4, "Is it toxic?", 3)]))
    assert "Brief for gap 1 (cluster 9) — Brown spots" in text
    assert "Brief for gap 2 (cluster 4) — Is it toxic?" in text
    assert "line 12 of the brief for Brown spots" in text  # no cut in the middle of a brief
    assert "line 3 of the brief for Is it toxic?" in text


def test_a_long_draft_is_cut_at_a_line_and_says_how_much_is_left():
    text = _printed(_result([_brief(9, "Brown spots", 45)]))
    assert "line 30 of the brief for Brown spots" in text
    assert "line 31 of" not in text
    assert "… 15 more lines" in text


def test_clip_lines_keeps_short_texts_as_they_are():
    assert clip_lines("a\nb", 2) == "a\nb"
    assert clip_lines("a\nb\nc", 2) == "a\nb\n… 1 more lines"
