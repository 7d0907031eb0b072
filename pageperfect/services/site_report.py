"""The site report: one self-contained HTML page (inline styles and SVG, no script, nothing loaded).

Pages by opportunity (bars), the intents several pages earn impressions for by page (a matrix,
each cell shaded by its share of the intent), the cannibalization cases with their evidence
(shares, positions, the covering passages, the reasons), and the links proposed instead of
duplicate sections.
"""

from __future__ import annotations

import html
from typing import Any

MAX_PAGES_DRAWN = 30
MAX_INTENTS_DRAWN = 30


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)


def _short(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[1] if "/" in rest else rest


def _bars(pages: list[dict]) -> str:
    shown = pages[:MAX_PAGES_DRAWN]
    top = max((p["opportunity"] for p in shown), default=0) or 1.0
    row, label, width = 22, 260, 420
    parts = [
        f'<svg class="chart bars" role="img" aria-label="Pages by opportunity" width="{label + width + 80}" '
        f'height="{row * len(shown) + 10}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, p in enumerate(shown):
        y = i * row + 4
        w = max(1.0, width * p["opportunity"] / top)
        parts.append(
            f'<text x="{label - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
            f"{_e(_short(p['url']))}</text>"
            f'<rect x="{label}" y="{y}" width="{w:.1f}" height="{row - 6}" fill="#2f7d6d">'
            f"<title>{_e(p['url'])}: {p['opportunity']:.3f}</title></rect>"
            f'<text x="{label + w + 6:.1f}" y="{y + 14}" font-size="12">{p["opportunity"]:.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _matrix(intents: list[dict], pages: list[dict]) -> str:
    shown = intents[:MAX_INTENTS_DRAWN]
    urls = [p["url"] for p in pages if any(p["url"] in i["pages"] for i in shown)]
    if not shown:
        return "<p>No intent is shared by two pages.</p>"
    head = "".join(f'<th scope="col" title="{_e(u)}">{_e(_short(u))}</th>' for u in urls)
    body = []
    for intent in shown:
        total = sum(intent["pages"].values()) or 1.0
        cells = []
        for u in urls:
            value = intent["pages"].get(u)
            if value is None:
                cells.append('<td class="cell empty"></td>')
            else:
                share = value / total
                cells.append(
                    f'<td class="cell" style="background: rgba(47,125,109,{0.15 + 0.85 * share:.2f})" '
                    f'title="{share:.0%}">{value:,.0f}</td>'
                )
        body.append(f'<tr><th scope="row">{_e(intent["intent"])}</th>{"".join(cells)}</tr>')
    return (
        f'<table class="matrix"><thead><tr><th>intent \\ page</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _case(number: int, case: dict) -> str:
    rows = "".join(
        f'<tr><td><a href="{_e(p["url"])}">{_e(_short(p["url"]))}</a></td><td>{p["impressions"]:,.0f}</td>'
        f"<td>{p['impression_share']:.0%}</td><td>{p['clicks']:,.0f}</td>"
        f"<td>{'' if p['click_share'] is None else format(p['click_share'], '.0%')}</td><td>{p['position']:.1f}</td>"
        f"<td>{'leader' if p['passage_cosine'] is None else format(p['passage_cosine'], '.2f')}</td></tr>"
        for p in case["pages"]
    )
    passages = "".join(
        f'<blockquote class="passage"><cite>{_e(_short(p["url"]))} · '
        f"{_e(' › '.join((p['passage'] or {}).get('heading_path') or []))}</cite>"
        f"<p>{_e((p['passage'] or {}).get('text') or '(no passage answers it)')}</p></blockquote>"
        for p in case["pages"]
    )
    reasons = "".join(f"<li>{_e(r)}</li>" for r in case["reasons"])
    return (
        f'<section class="case"><h3>{number}. {_e(case["intent"])} '
        f'<span class="rec {_e(case["recommendation"])}">{_e(case["recommendation"].replace("_", " "))}</span>'
        f'</h3><p class="meta">severity {case["severity"]:,.0f} · {case["total_impressions"]:,.0f} impressions · '
        f"evenness {case['evenness']:.2f} · queries: {_e(', '.join(case['queries'][:8]))}</p>"
        f'<table class="pages"><thead><tr><th>page</th><th>impressions</th><th>share</th><th>clicks</th>'
        f"<th>click share</th><th>position</th><th>passage cosine</th></tr></thead><tbody>{rows}</tbody></table>"
        f'{passages}<ul class="reasons">{reasons}</ul></section>'
    )


def _link(link: dict) -> str:
    return (
        f'<li class="link"><a href="{_e(link["from_url"])}">{_e(_short(link["from_url"]))}</a> lacks '
        f'<q>{_e(link["intent"])}</q>: link <q class="anchor">{_e(link["anchor_text"])}</q> to '
        f'<a href="{_e(link["to_url"])}">{_e(_short(link["to_url"]))}</a> (passage {_e(link["to_segment_id"])}, '
        f"coverage {link['coverage']:.2f}); score {link['original_score']:.3f} → {link['score']:.3f}"
        f'<blockquote class="passage"><p>{_e(link["passage"])}</p></blockquote>'
        f'<p class="brief">{_e(link["brief"])}</p></li>'
    )


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2a2a; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d5dede; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { padding: .25rem .5rem; border: 1px solid #d5dede; }
.matrix th[scope=col] { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; }
.matrix td.cell { text-align: right; min-width: 3rem; } .matrix td.empty { background: #f7f9f9; }
.rec { font-size: .8rem; padding: .1rem .5rem; border-radius: 1rem; background: #e5ecec; margin-left: .5rem; }
.rec.consolidate { background: #f3d6cf; } .rec.differentiate { background: #f5ebc8; }
.rec.leave_alone { background: #d8ecd9; }
blockquote.passage { margin: .4rem 0 .4rem 1rem; padding-left: .8rem; border-left: 3px solid #9cc3ba; color: #3b4a4a; }
.meta { color: #566; } .stats span { margin-right: 1.4rem; }
"""


def render_site_report(result: dict) -> str:
    stats = result.get("stats") or {}
    pages, cases, links = result["pages"], result["cannibalization"], result["links"]
    summary = "".join(
        f"<span><b>{_e(stats.get(k, v))}</b> {label}</span>"
        for k, v, label in (
            ("pages", len(pages), "pages"),
            ("site_intents", "", "site intents"),
            ("cases", len(cases), "cases"),
            ("links", len(links), "links"),
        )
    )
    cases_html = "".join(_case(i + 1, c) for i, c in enumerate(cases)) or "<p>No two pages compete for an intent.</p>"
    links_html = (
        ("<ul>" + "".join(_link(x) for x in links) + "</ul>")
        if links
        else "<p>No gap is answered by another page of the site.</p>"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Site report · {_e(result["site_id"])}'
        f'</title><meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f"style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\"><style>{STYLE}</style></head>"
        f'<body><h1>Site report</h1><p class="stats">{summary}</p>'
        f"<h2>Pages by opportunity</h2>{_bars(pages)}"
        f'<h2>Intents by page</h2><p class="meta">Impressions of each intent that two or more pages earn, '
        f"shaded by the page's share.</p>{_matrix(result.get('intents') or [], pages)}"
        f"<h2>Cannibalization</h2>{cases_html}"
        f"<h2>Links instead of new sections</h2>{links_html}</body></html>"
    )
