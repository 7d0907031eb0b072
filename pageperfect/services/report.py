"""A job's report as one self-contained HTML page: charts in inline SVG, styles inline, no script.

The page loads nothing from anywhere (its Content-Security-Policy forbids it), so it can
be mailed, archived or opened offline. Everything that comes from the crawled page or
the queries is untrusted and goes through `_e` (html.escape) before it reaches the markup.
"""

from __future__ import annotations

import difflib
import html
import math
import re
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import numpy as np

from db import queries
from pageperfect.services.results import artifact_ids, build_result
from pageperfect.analysis.rewrite import split_for_diff

# The browser may load nothing: no scripts, fonts, images or frames from anywhere; only the inline styles apply.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

GAP_COLOUR = "#e4572e"
COVERED_COLOUR = "#2a9d8f"
SEGMENT_COLOUR = "#3d405b"
MAX_BARS = 20
MAX_LABELS = 8
MAX_OUTLINE_CHARS = 220


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class ReportData:
    """What the report shows: the job's result, plus the vectors behind the scatter and the outline."""

    job: dict[str, Any]
    result: dict[str, Any]
    segments: list[dict[str, Any]]  # segment_id, position, kind, heading_level, heading_path, text
    segment_vectors: np.ndarray  # one row per segment
    centroids: dict[int, np.ndarray]  # cluster id -> centroid


async def load_report(pool: asyncpg.Pool, job: asyncpg.Record) -> ReportData:
    result = await build_result(pool, job)
    ids = await artifact_ids(pool, job)
    segments, vectors = [], []
    if ids["segment_sets"]:
        for row in await queries.get_segments(pool, ids["segment_sets"]):
            record = dict(row)
            vectors.append(queries.unpack_vector(record.pop("embedding")))
            record["heading_path"] = list(record["heading_path"])
            segments.append(record)
    centroids = {}
    if ids["cluster_sets"]:
        for row in await queries.get_clusters(pool, ids["cluster_sets"]):
            centroids[row["cluster_id"]] = queries.unpack_vector(row["centroid"])
    dim = vectors[0].shape[0] if vectors else 0
    return ReportData(
        job={k: job[k] for k in ("id", "url", "status", "created_at", "completed_at")},
        result=result,
        segments=segments,
        segment_vectors=np.vstack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32),
        centroids=centroids,
    )


# ---------------------------------------------------------------- numbers behind the charts


def _normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def project_2d(matrix: np.ndarray, fit_on: np.ndarray | None = None) -> np.ndarray:
    """PCA to two dimensions (numpy SVD), fitted on `fit_on` (default: the rows themselves).

    Rows with no spread land on the origin; a fit with one direction only gets a flat second axis.
    """
    fit = matrix if fit_on is None else fit_on
    if matrix.shape[0] == 0:
        return np.zeros((0, 2))
    mean = fit.mean(axis=0, keepdims=True)
    centred = (fit - mean).astype(np.float64)
    if fit.shape[0] < 2 or not np.any(centred):
        return np.zeros((matrix.shape[0], 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = (matrix - mean) @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    return coords


def best_clusters(segment_vectors: np.ndarray, centroids: dict[int, np.ndarray]) -> list[tuple[int, float] | None]:
    """For each segment, the cluster whose centroid it is closest to (cosine) and how close."""
    if not centroids or segment_vectors.shape[0] == 0:
        return [None] * segment_vectors.shape[0]
    ids = list(centroids)
    matrix = np.vstack([centroids[i] for i in ids])
    if matrix.shape[1] != segment_vectors.shape[1]:
        return [None] * segment_vectors.shape[0]
    similarity = _normalized(segment_vectors) @ _normalized(matrix).T
    best = similarity.argmax(axis=1)
    return [(ids[b], float(similarity[row, b])) for row, b in enumerate(best)]


# ---------------------------------------------------------------- charts


def _coverage_ring(coverage: float | None) -> str:
    if coverage is None:
        return '<div class="ring-empty">n/a</div>'
    radius, circumference = 52, 2 * math.pi * 52
    share = max(0.0, min(1.0, coverage))
    colour = COVERED_COLOUR if share >= 0.7 else ("#e9c46a" if share >= 0.4 else GAP_COLOUR)
    return (
        f'<svg class="ring" viewBox="0 0 130 130" role="img" aria-label="coverage {share:.0%}">'
        f'<circle cx="65" cy="65" r="{radius}" fill="none" stroke="#e6e8ef" stroke-width="14"/>'
        f'<circle cx="65" cy="65" r="{radius}" fill="none" stroke="{colour}" stroke-width="14" '
        f'stroke-linecap="round" stroke-dasharray="{circumference * share:.1f} {circumference:.1f}" '
        f'transform="rotate(-90 65 65)"/>'
        f'<text x="65" y="72" text-anchor="middle" class="ring-value">{share:.0%}</text></svg>'
    )


def gap_bars(gaps: list[dict]) -> str:
    """The gaps, most opportunity first, as horizontal bars."""
    ranked = sorted((g for g in gaps if g["has_gap"]), key=lambda g: -g["opportunity_score"])[:MAX_BARS]
    if not ranked:
        return '<p class="empty">No gaps: every query cluster is covered by some passage of the page.</p>'
    width, label_w, row_h, top = 1000, 330, 34, 8
    bar_w = width - label_w - 260  # room for the value and its note
    peak = max(g["opportunity_score"] for g in ranked) or 1.0
    height = top + row_h * len(ranked) + 8
    parts = [
        f'<svg class="chart bars" viewBox="0 0 {width} {height}" role="img" aria-label="gaps ranked by opportunity">'
    ]
    for i, gap in enumerate(ranked):
        y = top + i * row_h
        length = max(2.0, bar_w * gap["opportunity_score"] / peak)
        tip = (
            f"{gap['representative']}: score {gap['opportunity_score']:.3f}, "
            f"{gap['total_impressions']:,.0f} impressions, position {gap['avg_position']:.1f}, "
            f"{len(gap['keywords'])} queries: {', '.join(gap['keywords'][:12])}" + _why(gap)
        )
        parts.append(
            f'<g class="bar"><title>{_e(tip)}</title>'
            f'<text x="{label_w - 12}" y="{y + 21}" text-anchor="end" class="bar-label">'
            f"{i + 1}. {_e(_clip(gap['representative'], 42))}</text>"
            f'<rect x="{label_w}" y="{y + 6}" width="{length:.1f}" height="{row_h - 12}" rx="4" fill="{GAP_COLOUR}"/>'
            f'<text x="{label_w + length + 8:.1f}" y="{y + 21}" class="bar-value">{gap["opportunity_score"]:.3f}'
            f'<tspan class="bar-note"> · {gap["total_impressions"]:,.0f} impr · pos {gap["avg_position"]:.1f}</tspan>'
            f"</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _why(gap: dict) -> str:
    """Why the analysis calls it a gap: its coverage, who decided, the words no passage has, and the wordings
    the page answers that were kept in it (coverage.decide)."""
    if gap.get("coverage") is None:
        return ""
    explanation = gap.get("explanation") or {}
    missing = (explanation.get("words") or {}).get("missing") or []
    judge = explanation.get("judge") or {}
    text = f"; coverage {gap['coverage']:.2f}"
    if gap.get("decided_by") == "llm":
        text += f" (the LLM judged: {judge.get('status')})"
    text += f"; the closest passage lacks: {', '.join(missing[:8])}" if missing else ""
    not_split = explanation.get("not_split") or {}
    kept = (not_split.get("queries") or []) if not_split.get("read_as") == "answered" else []
    if kept:
        text += f"; answered as worded in {len(kept)} of its queries ({', '.join(kept[:4])}), kept in it"
    return text


def _placed_labels(labels: list[tuple[float, float, float, float, str]], width: int, height: int) -> list[str]:
    """Labels beside their circles where they overlap no other label, most important first; the rest
    are left to the tooltips."""
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for _, x, y, r, text in sorted(labels, key=lambda item: -item[0]):
        w, h = 7.0 * len(text) + 6, 17.0
        for left, top, anchor, tx, ty in (
            (x + r + 4, y - h / 2, "start", x + r + 6, y + 4.5),
            (x - r - 4 - w, y - h / 2, "end", x - r - 6, y + 4.5),
            (x - w / 2, y - r - 3 - h, "middle", x, y - r - 8),
            (x - w / 2, y + r + 3, "middle", x, y + r + 15),
        ):
            box = (left, top, left + w, top + h)
            inside = box[0] >= 4 and box[1] >= 4 and box[2] <= width - 4 and box[3] <= height - 4
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                out.append(
                    f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" class="point-label">{_e(text)}</text>'
                )
                break
    return out


def _frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points scaled into the unit square, the frame set by the middle of the data so one outlier does not
    squeeze the rest into a corner; what falls outside sits on the edge (flagged)."""
    share, margin = 0.05, 0.08  # the middle 90% of the points, and 8% of room around it
    if points.shape[0] == 0:
        return points, np.zeros(0, dtype=bool)
    low, high = np.quantile(points, share, axis=0), np.quantile(points, 1 - share, axis=0)
    span = high - low
    low, high = low - margin * span, high + margin * span
    span = np.where(high - low == 0, 1, high - low)
    scaled = (points - low) / span
    clamped = np.any((scaled < 0) | (scaled > 1), axis=1)
    return np.clip(scaled, 0, 1), clamped


def cluster_map(data: ReportData) -> str:
    """Cluster centroids and the page's segments in one PCA plane; circles sized by impressions."""
    gaps_by_cluster = {g["cluster_id"]: g for g in data.result["gaps"]}
    # A part split off by the coverage decision has no stored centroid of its own: it is drawn at its cluster's.
    placed = {
        c: data.centroids.get(c, data.centroids.get((gap.get("explanation") or {}).get("split_from", c)))
        for c, gap in gaps_by_cluster.items()
    }
    cluster_ids = [c for c, centroid in placed.items() if centroid is not None]
    if not cluster_ids:
        return '<p class="empty">No query clusters to draw.</p>'
    centroid_matrix = np.vstack([placed[c] for c in cluster_ids])
    segments = data.segment_vectors
    if segments.shape[0] and segments.shape[1] != centroid_matrix.shape[1]:
        segments = np.zeros((0, centroid_matrix.shape[1]), dtype=np.float32)
    # The plane that spreads the clusters best; the segments are placed in it, not used to choose it.
    points = project_2d(_normalized(np.vstack([centroid_matrix, segments])), fit_on=_normalized(centroid_matrix))
    width, height, pad = 1000, 560, 48
    scaled, clamped = _frame(points)
    xs = pad + scaled[:, 0] * (width - 2 * pad)
    ys = height - pad - scaled[:, 1] * (height - 2 * pad)
    peak = max((gaps_by_cluster[c]["total_impressions"] for c in cluster_ids), default=0) or 1.0

    parts = [
        f'<svg class="chart scatter" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="query clusters and page segments">',
        f'<rect x="0" y="0" width="{width}" height="{height}" rx="10" fill="#fafbfd"/>',
    ]
    for k in range(1, 4):  # a light grid
        across, down = width * k / 4, height * k / 4
        parts.append(f'<line x1="{across:.0f}" y1="12" x2="{across:.0f}" y2="{height - 12}" class="grid"/>')
        parts.append(f'<line x1="12" y1="{down:.0f}" x2="{width - 12}" y2="{down:.0f}" class="grid"/>')
    segment_titles = [" › ".join(s["heading_path"][-2:]) or "(before the first heading)" for s in data.segments]
    for i in range(segments.shape[0]):
        x, y = xs[len(cluster_ids) + i], ys[len(cluster_ids) + i]
        seg = data.segments[i]
        tip = f"segment {seg['position']}: {segment_titles[i]} — {_clip(seg['text'], 140)}"
        parts.append(
            f'<g class="segment"><title>{_e(tip)}</title>'
            f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
            f'transform="rotate(45 {x:.1f} {y:.1f})" '
            f'fill="{SEGMENT_COLOUR}" opacity="0.55"/></g>'
        )
    # Big circles first, so small ones stay visible on top.
    order = sorted(range(len(cluster_ids)), key=lambda i: -gaps_by_cluster[cluster_ids[i]]["total_impressions"])
    labelled = {
        g["cluster_id"]
        for g in sorted((g for g in data.result["gaps"] if g["has_gap"]), key=lambda g: -g["opportunity_score"])[
            :MAX_LABELS
        ]
    }
    labels = []
    for i in order:
        gap = gaps_by_cluster[cluster_ids[i]]
        radius = 5 + 25 * math.sqrt(max(gap["total_impressions"], 0) / peak)
        colour = GAP_COLOUR if gap["has_gap"] else COVERED_COLOUR
        best = gap.get("best_match") or {}
        similarity = f", closest passage {best['similarity']:.2f}" if best.get("similarity") is not None else ""
        if gap.get("coverage") is not None:
            similarity = f", coverage {gap['coverage']:.2f}" + (
                " (judged by the LLM)" if gap.get("decided_by") == "llm" else ""
            )
        tip = (
            f"{gap['representative']} ({'gap' if gap['has_gap'] else 'covered'}): "
            f"{gap['total_impressions']:,.0f} impressions, position {gap['avg_position']:.1f}{similarity}"
        )
        parts.append(
            f'<g class="cluster {"gap" if gap["has_gap"] else "covered"}"><title>{_e(tip)}</title>'
            f'<circle cx="{xs[i]:.1f}" cy="{ys[i]:.1f}" r="{radius:.1f}" fill="{colour}" '
            f'fill-opacity="0.62" stroke="{colour}" stroke-width="1.5"/></g>'
        )
        if gap["cluster_id"] in labelled:
            labels.append((gap["opportunity_score"], xs[i], ys[i], radius, _clip(gap["representative"], 34)))
    parts.extend(_placed_labels(labels, width, height))  # labels above every mark
    parts.append("</svg>")
    legend = (
        '<div class="legend">'
        f'<span><i class="dot" style="background:{GAP_COLOUR}"></i>gap (query cluster the page does not cover)</span>'
        f'<span><i class="dot" style="background:{COVERED_COLOUR}"></i>covered cluster</span>'
        f'<span><i class="diamond" style="background:{SEGMENT_COLOUR}"></i>page segment</span>'
        '<span class="muted">circle area ∝ impressions · axes: first two principal components of the embeddings</span>'
        "</div>"
    )
    return "".join(parts) + legend


# ---------------------------------------------------------------- outline and drafts


def outline(data: ReportData) -> str:
    if not data.segments:
        return '<p class="empty">No segments stored for this job.</p>'
    gaps_by_cluster = {g["cluster_id"]: g for g in data.result["gaps"]}
    matches = best_clusters(data.segment_vectors, data.centroids)
    rows = []
    for seg, match in zip(data.segments, matches):
        level = seg["heading_level"] if seg["kind"] == "heading" else seg["heading_level"] + 1
        indent = min(max(level - 1, 0), 5)
        chip = ""
        if match is not None and match[0] in gaps_by_cluster:
            gap = gaps_by_cluster[match[0]]
            kind = "gap" if gap["has_gap"] else "covered"
            chip = (
                f'<span class="chip {kind}" title="{_e(", ".join(gap["keywords"][:10]))}">'
                f"{_e(_clip(gap['representative'], 40))} <b>{match[1]:.2f}</b></span>"
            )
        if seg["kind"] == "heading":
            body = f'<span class="h">{_e(_clip(seg["text"], 120))}</span>'
        else:
            body = (
                f'<span class="kind">{_e(seg["kind"].replace("_", " "))}</span> '
                f"{_e(_clip(seg['text'], MAX_OUTLINE_CHARS))}"
            )
        rows.append(
            f'<li class="seg {"heading" if seg["kind"] == "heading" else "text"}" style="--indent:{indent}">'
            f'<div class="seg-text">{body}</div>{chip}</li>'
        )
    return '<ol class="outline">' + "".join(rows) + "</ol>"


def _word_diff(old: str, new: str) -> tuple[str, str]:
    a, b = old.split(" "), new.split(" ")
    left, right = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        old_words, new_words = _e(" ".join(a[i1:i2])), _e(" ".join(b[j1:j2]))
        if tag == "equal":
            left.append(old_words)
            right.append(new_words)
        else:
            if old_words:
                left.append(f"<del>{old_words}</del>")
            if new_words:
                right.append(f"<ins>{new_words}</ins>")
    return " ".join(left), " ".join(right)


def _units(text: str) -> list[tuple[str, str]]:
    """(separator before it, sentence) pairs: sentences are what the diff compares, separators keep the
    text's own lines and paragraphs when a run of them is shown."""
    units: list[tuple[str, str]] = []
    for p, paragraph in enumerate(re.split(r"\n\s*\n", (text or "").strip())):
        for n, line in enumerate(paragraph.splitlines()):
            for k, sentence in enumerate(split_for_diff(line)):
                units.append(("\n\n" if p and not n and not k else "\n" if n and not k else " ", sentence))
    return units


def _run(units: list[tuple[str, str]], marked: list[str]) -> str:
    """Already escaped (and marked) sentences, joined by their separators."""
    return "".join((sep if i else "") + text for i, ((sep, _), text) in enumerate(zip(units, marked)))


def side_by_side(original: str, draft: str) -> str:
    """The draft against the passage it replaces: one row per run of equal, changed, removed or added
    sentences, changed words marked inside changed sentences."""
    a, b = _units(original), _units(draft)
    rows = []
    matcher = difflib.SequenceMatcher(a=[u[1] for u in a], b=[u[1] for u in b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        old, new = a[i1:i2], b[j1:j2]
        if tag == "equal":
            left, right, classes = _run(old, [_e(t) for _, t in old]), _run(new, [_e(t) for _, t in new]), ("eq", "eq")
        elif tag == "replace":
            paired = min(len(old), len(new))
            words = [_word_diff(old[i][1], new[i][1]) for i in range(paired)]
            left = _run(old, [w[0] for w in words] + [f"<del>{_e(t)}</del>" for _, t in old[paired:]])
            right = _run(new, [w[1] for w in words] + [f"<ins>{_e(t)}</ins>" for _, t in new[paired:]])
            classes = ("del", "ins")
        elif tag == "delete":
            left, right, classes = _run(old, [_e(t) for _, t in old]), "", ("del", "none")
        else:
            left, right, classes = "", _run(new, [_e(t) for _, t in new]), ("none", "ins")
        rows.append(f'<tr><td class="{classes[0]}">{left}</td><td class="{classes[1]}">{right}</td></tr>')
    return (
        '<table class="diff"><thead><tr><th>On the page now</th><th>Proposed</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def drafts(data: ReportData) -> str:
    if not data.result["drafts"]:
        return '<p class="empty">No drafts: there were no gaps to draft for.</p>'
    gaps_by_cluster = {g["cluster_id"]: g for g in data.result["gaps"]}
    blocks = []
    for draft in data.result["drafts"]:
        gap = gaps_by_cluster.get(draft["cluster_id"], {})
        label = "Draft" if draft["kind"] == "draft" else "Brief"
        action = (
            "rewrites the closest passage"
            if draft["action"] == "rewrite"
            else "adds a section after the closest passage"
        )
        queries_list = ", ".join(gap.get("keywords", [])[:12])
        blocks.append(
            f'<article class="draft"><h3>{label}: '
            f"{_e(draft.get('suggested_heading') or gap.get('representative', ''))}</h3>"
            f'<p class="muted">For “{_e(gap.get("representative", ""))}” ({_e(queries_list)}); {action}'
            + (f"; model {_e(draft['model'])}" if draft.get("model") else "")
            + "</p>"
            + side_by_side(draft.get("original") or "", draft.get("draft") or "")
            + "</article>"
        )
    return "".join(blocks)


# ---------------------------------------------------------------- the page


def _page_link(url: str) -> str:
    if urlsplit(url).scheme in ("http", "https"):
        return f'<a href="{_e(url)}" rel="noopener noreferrer nofollow">{_e(url)}</a>'
    return _e(url)


def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="card-value">{value}</div><div class="card-label">{_e(label)}</div></div>'


def render_report(data: ReportData) -> str:
    result, stats = data.result, data.result["stats"]
    page = result["page"]
    title = page.get("title") or page["url"]
    coverage = stats.get("coverage_score")
    providers = result["providers"]
    embedding = providers.get("embedding") or {}
    llm = providers.get("llm") or {}
    completed = data.job.get("completed_at")
    completed_text = completed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if isinstance(completed, datetime) else ""
    note = f'<p class="note">{_e(providers["note"])}</p>' if providers.get("note") else ""
    cards = "".join(
        [
            _card("segments on the page", f"{stats['segments']}"),
            _card("search queries", f"{stats['keywords']}"),
            _card("query clusters", f"{stats['clusters']}"),
            _card("gaps", f'<span style="color:{GAP_COLOUR}">{stats["gaps"]}</span>'),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>PagePerfect report: {_e(_clip(title, 80))}</title>
<style>{_STYLE}</style></head>
<body><main>
<header>
  <div class="brand">PagePerfect report</div>
  <h1>{_e(title)}</h1>
  <div class="url">{_page_link(page["url"])}</div>
</header>
<section class="summary">
  <div class="coverage">{_coverage_ring(coverage)}
    <div><div class="coverage-title">Coverage</div>
    <div class="muted">share of the page's search impressions whose queries some passage already answers
    (similarity ≥ {stats.get("gap_threshold") or 0:.2f}, {_e(stats.get("score") or "")} scoring)</div></div></div>
  <div class="cards">{cards}</div>
</section>
{note}
<section><h2>Gaps by opportunity</h2>
<p class="muted">Query clusters no passage covers, ranked by how much traffic answering them could bring
(impressions, and how close to the first page they already rank). Hover a bar for its queries.</p>
{gap_bars(result["gaps"])}</section>
<section><h2>Query clusters and the page</h2>
<p class="muted">Each circle is a cluster of the page's search queries, each diamond a passage of the page,
placed by meaning: passages near a cluster talk about it.</p>
{cluster_map(data)}</section>
<section><h2>The page's outline</h2>
<p class="muted">Every segment under its headings, with the query cluster it is closest to and the cosine
similarity.</p>
{outline(data)}</section>
<section><h2>Drafts</h2>{drafts(data)}</section>
<footer>Job {_e(data.job["id"])} · {_e(data.job["status"])}{" · " + _e(completed_text) if completed_text else ""}
 · embeddings {_e(embedding.get("provider", "n/a"))} {_e(embedding.get("model", ""))}
 · drafts {_e(llm.get("provider", "n/a"))} {_e(llm.get("model") or "")}</footer>
</main></body></html>
"""


_STYLE = """
:root { --ink:#1d2433; --muted:#5b6478; --line:#e6e8ef; --bg:#f4f6fa; --gap:%s; --covered:%s; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1120px; margin:0 auto; padding:32px 24px 48px; }
header { margin-bottom:20px; }
.brand { font-size:12px; letter-spacing:.12em; text-transform:uppercase; color:var(--muted); font-weight:600; }
h1 { font-size:28px; line-height:1.25; margin:6px 0 4px; }
h2 { font-size:19px; margin:0 0 4px; }
h3 { font-size:16px; margin:0 0 4px; }
.url, .url a { color:var(--muted); word-break:break-all; }
section { background:#fff; border:1px solid var(--line); border-radius:14px; padding:22px 24px; margin:18px 0;
  box-shadow:0 1px 2px rgba(20,30,60,.04); }
.summary { display:flex; flex-wrap:wrap; gap:24px; align-items:center; justify-content:space-between; }
.coverage { display:flex; gap:18px; align-items:center; flex:1 1 380px; max-width:480px; }
.coverage-title { font-size:18px; font-weight:650; }
.ring { width:130px; height:130px; flex:none; }
.ring-value { font-size:30px; font-weight:700; fill:var(--ink); }
.ring-empty { width:130px; text-align:center; font-size:26px; color:var(--muted); }
.cards { display:grid; grid-template-columns:repeat(4, 124px); gap:10px; }
.card { border:1px solid var(--line); border-radius:10px; padding:12px 8px; text-align:center; background:#fafbfd; }
.card-value { font-size:26px; font-weight:700; }
.card-label { font-size:12px; color:var(--muted); }
.muted { color:var(--muted); font-size:13.5px; margin:2px 0 12px; }
.note { background:#fff8e6; border:1px solid #f3dfa8; border-radius:10px; padding:10px 14px; font-size:13.5px; }
.empty { color:var(--muted); font-style:italic; }
.chart { width:100%%; height:auto; display:block; }
.chart text { font-family:inherit; }
.bar-label { font-size:14px; fill:var(--ink); }
.bar-value { font-size:13px; font-weight:650; fill:var(--ink); }
.bar-note { font-weight:400; fill:var(--muted); }
.bar:hover rect { filter:brightness(.9); }
.grid { stroke:#e9ecf3; stroke-width:1; }
.point-label { font-size:13px; fill:var(--ink); paint-order:stroke; stroke:#fafbfd; stroke-width:4px; }
.cluster:hover circle { fill-opacity:.9; }
.legend { display:flex; flex-wrap:wrap; gap:18px; font-size:13px; margin-top:10px; align-items:center; }
.dot { display:inline-block; width:12px; height:12px; border-radius:50%%; margin-right:6px; vertical-align:-1px;
       opacity:.8; }
.diamond { display:inline-block; width:9px; height:9px; transform:rotate(45deg); margin-right:8px; opacity:.6; }
.outline { list-style:none; margin:0; padding:0; }
.seg { display:flex; gap:12px; justify-content:space-between; align-items:baseline;
  padding:5px 0 5px calc(var(--indent) * 22px); border-bottom:1px solid #f1f3f7; }
.seg.heading .h { font-weight:650; }
.seg-text { flex:1; min-width:0; }
.kind { font-size:11px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); margin-right:4px; }
.chip { flex:none; max-width:300px; font-size:12px; border-radius:999px; padding:2px 10px; white-space:nowrap;
  overflow:hidden; text-overflow:ellipsis; }
.chip.gap { background:#fde8e2; color:#9c2f12; }
.chip.covered { background:#dcf2ee; color:#17625a; }
.draft { border-top:1px solid var(--line); padding-top:16px; margin-top:16px; }
.draft:first-of-type { border-top:none; margin-top:8px; padding-top:0; }
.diff { width:100%%; border-collapse:collapse; table-layout:fixed; font-size:13.5px; }
.diff th { text-align:left; font-size:12px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted);
  padding:6px 10px; border-bottom:1px solid var(--line); }
.diff td { vertical-align:top; padding:8px 12px; white-space:pre-wrap; word-wrap:break-word;
           border-bottom:2px solid #fff; }
.diff td.del { background:#fdeeee; } .diff td.ins { background:#e9f7ee; }
.diff td.none { background:#fafbfd; }
del { background:#f7c9c9; text-decoration:line-through; } ins { background:#bfe8cc; text-decoration:none; }
footer { color:var(--muted); font-size:12.5px; margin-top:18px; }
@media (max-width: 760px) { .cards { grid-template-columns:repeat(2, 1fr); } .seg { flex-wrap:wrap; } }
""" % (GAP_COLOUR, COVERED_COLOUR)  # noqa: UP031 - CSS braces would all need doubling in an f-string or .format
