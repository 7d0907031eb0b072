import csv
import json
import os
import re
from pathlib import Path

import pytest

import pageperfect.analysis.segment as segment_module
from pageperfect.analysis.segment import (
    MAX_SEGMENT_CHARS,
    MAX_SEGMENTS,
    ExtractedPage,
    NoContent,
    Segment,
    extract_page,
    segment_text_for_embedding,
)

DEMO = Path(segment_module.__file__).resolve().parents[1] / "demo"

ARTICLE = """<!DOCTYPE html>
<html lang="en-GB">
<head>
  <title>Cold Brew Coffee at Home - The Daily Grind Blog</title>
  <meta property="og:title" content="How to Make Cold Brew Coffee at Home">
  <meta name="description" content="A simple cold brew coffee method: ratio, grind, steeping time and storage.">
  <script>var analytics = {track: function () {}};</script>
  <style>.cookie-notice { position: fixed }</style>
</head>
<body>
  <div class="cookie-notice" id="cookie-banner">
    <p>This website uses cookies to improve your experience. Accept all cookies or manage your tracking preferences.</p>
    <button>Accept</button>
  </div>
  <header>
    <nav>
      <ul>
        <li><a href="/">Home</a></li>
        <li><a href="/espresso">Espresso machines</a></li>
        <li><a href="/teapots">Teapots and kettles</a></li>
        <li><a href="/shop">Merchandise shop</a></li>
      </ul>
    </nav>
  </header>
  <div class="container">
    <main>
      <article>
        <h1>How to Make Cold Brew Coffee at Home</h1>
        <p>Cold brew is coffee steeped in cold water for many hours instead of brewed with hot water. The slow extraction gives a smooth, sweet and low-acid cup that keeps in the fridge for days.</p>
        <p>You need nothing more than coarse coffee, cold water, a large jar and something to strain the grounds with.</p>
        <h2>Choosing the coffee</h2>
        <h3>Roast level</h3>
        <p>Medium and dark roasts make the classic chocolatey cold brew, while light roasts give a brighter, fruitier glass that some people find thin when served over ice.</p>
        <h3>Grind size</h3>
        <p>Grind the beans very coarsely, like raw sugar crystals. A fine grind over-extracts during the long steep and clogs the filter, which makes the coffee muddy and bitter.</p>
        <h2>The cold brew ratio</h2>
        <p>Start with one part coffee to eight parts water by weight for a drink you can pour straight over ice.</p>
        <table>
          <tr><th>Strength</th><th>Coffee</th><th>Water</th></tr>
          <tr><td>Ready to drink</td><td>100 grams</td><td>800 millilitres</td></tr>
          <tr><td>Concentrate to dilute</td><td>200 grams</td><td>800 millilitres</td></tr>
        </table>
        <h2>Steeping and straining</h2>
        <ol>
          <li>Stir the grounds into the water until no dry clumps remain.</li>
          <li>Cover the jar and steep it for 12 to 18 hours at room temperature or in the fridge.</li>
          <li>Strain through a fine sieve lined with a paper filter, then bottle the coffee.</li>
        </ol>
        <p>Cold brew keeps for about two weeks in a sealed bottle in the fridge, although the flavour is best in the first week.</p>
      </article>
      <section id="comments" class="comments-area">
        <h2>4 Responses</h2>
        <div class="comment"><p>Great recipe! I tried it with oat milk and cardamom syrup, delicious.</p></div>
        <div class="comment"><p>Does this work with a French press plunger? Mine always tastes sour.</p></div>
      </section>
    </main>
    <aside class="sidebar">
      <div class="widget">
        <h3>Related posts</h3>
        <ul>
          <li><a href="/matcha">Whisking matcha without lumps</a></li>
          <li><a href="/chai">Homemade masala chai concentrate</a></li>
        </ul>
      </div>
    </aside>
  </div>
  <footer>
    <p>The Daily Grind also reviews hiking boots and camping stoves. Subscribe to our newsletter.</p>
    <p>Copyright 2025 The Daily Grind. Privacy policy.</p>
  </footer>
</body>
</html>
"""

CLUTTER_WORDS = [
    "cookies", "tracking", "espresso", "teapots", "merchandise", "oat milk", "cardamom",
    "french press", "responses", "related posts", "matcha", "chai", "hiking", "camping",
    "newsletter", "copyright", "privacy", "analytics",
]  # fmt: skip


def _all_text(page: ExtractedPage) -> str:
    return "\n".join(segment.text for segment in page.segments).lower()


def _by_text(page: ExtractedPage, start: str) -> Segment:
    matches = [segment for segment in page.segments if segment.text.startswith(start)]
    assert len(matches) == 1, f"expected one segment starting with {start!r}, got {matches}"
    return matches[0]


@pytest.fixture(scope="module")
def article() -> ExtractedPage:
    return extract_page(ARTICLE, url="https://blog.example.com/cold-brew")


def test_clutter_is_left_out(article: ExtractedPage) -> None:
    text = _all_text(article)
    for word in CLUTTER_WORDS:
        assert word not in text, f"{word!r} from the page clutter leaked into the segments"


def test_article_paragraphs_list_items_and_table_rows_are_kept(article: ExtractedPage) -> None:
    assert article.extractor == "trafilatura"
    intro = _by_text(article, "Cold brew is coffee steeped in cold water")
    assert intro.kind == "paragraph"
    assert intro.text.endswith("keeps in the fridge for days.")
    assert _by_text(article, "Grind the beans very coarsely").kind == "paragraph"
    steps = [segment for segment in article.segments if segment.kind == "list_item"]
    assert [step.text.split()[0] for step in steps] == ["Stir", "Cover", "Strain"]
    rows = [segment.text for segment in article.segments if segment.kind == "table_cell"]
    assert rows == [
        "Strength | Coffee | Water",
        "Ready to drink | 100 grams | 800 millilitres",
        "Concentrate to dilute | 200 grams | 800 millilitres",
    ]
    assert _by_text(article, "Cold brew keeps for about two weeks").kind == "paragraph"


def test_heading_paths_and_levels(article: ExtractedPage) -> None:
    title = "How to Make Cold Brew Coffee at Home"
    headings = [(s.heading_level, s.heading_path) for s in article.segments if s.kind == "heading"]
    assert headings == [
        (1, (title,)),
        (2, (title, "Choosing the coffee")),
        (3, (title, "Choosing the coffee", "Roast level")),
        (3, (title, "Choosing the coffee", "Grind size")),
        (2, (title, "The cold brew ratio")),
        (2, (title, "Steeping and straining")),
    ]
    intro = _by_text(article, "Cold brew is coffee steeped")
    assert (intro.heading_level, intro.heading_path) == (1, (title,))
    grind = _by_text(article, "Grind the beans")
    assert (grind.heading_level, grind.heading_path) == (3, (title, "Choosing the coffee", "Grind size"))
    # an h2 closes the h3 before it
    ratio = _by_text(article, "Start with one part coffee")
    assert (ratio.heading_level, ratio.heading_path) == (2, (title, "The cold brew ratio"))
    row = _by_text(article, "Ready to drink")
    assert row.heading_path == (title, "The cold brew ratio")


def test_positions_and_ids(article: ExtractedPage) -> None:
    assert [segment.position for segment in article.segments] == list(range(len(article.segments)))
    ids = [segment.segment_id for segment in article.segments]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{16}", segment_id) for segment_id in ids)


def test_metadata(article: ExtractedPage) -> None:
    assert article.title == "How to Make Cold Brew Coffee at Home"  # og:title beats <title>
    assert article.meta_description == "A simple cold brew coffee method: ratio, grind, steeping time and storage."
    assert article.language == "en-GB"
    assert article.truncated is False


def test_metadata_falls_back_to_title_and_og_description() -> None:
    page = extract_page(
        "<html><head><title>  Plain   title </title><meta property='og:description' content='From OG.'></head>"
        "<body><p>Some body text that is long enough to count as the main content of this page.</p></body></html>"
    )
    assert page.title == "Plain title"
    assert page.meta_description == "From OG."
    assert page.language is None


def test_ids_are_stable_when_other_parts_change(article: ExtractedPage) -> None:
    changed_html = ARTICLE.replace(
        "Grind the beans very coarsely, like raw sugar crystals.",
        "Grind the beans coarsely, about like sea salt.",
    ).replace(
        "<h1>How to Make Cold Brew Coffee at Home</h1>",
        "<h1>How to Make Cold Brew Coffee at Home</h1><p>Updated for 2025 with a new section on concentrate strength.</p>",
    )
    changed = extract_page(changed_html)
    before = {(s.heading_path, s.text): s.segment_id for s in article.segments}
    after = {(s.heading_path, s.text): s.segment_id for s in changed.segments}
    unchanged = before.keys() & after.keys()
    assert len(unchanged) == len(article.segments) - 1
    assert all(before[key] == after[key] for key in unchanged)
    old_grind = _by_text(article, "Grind the beans").segment_id
    new_grind = _by_text(changed, "Grind the beans").segment_id
    assert old_grind != new_grind
    # positions moved (a paragraph was inserted near the top) while ids stayed
    assert _by_text(changed, "Start with one part").position == _by_text(article, "Start with one part").position + 1


def test_identical_texts_get_distinct_ids() -> None:
    repeated = "Check the soil with your finger before every single watering."
    between = "<p>Then water slowly until it drains from the bottom of the pot.</p>"
    html = f"<html><body><article><h2>Routine</h2><p>{repeated}</p>{between}<p>{repeated}</p></article></body></html>"
    page = extract_page(html)
    copies = [segment for segment in page.segments if segment.text == repeated]
    assert len(copies) == 2
    assert copies[0].segment_id != copies[1].segment_id
    # the first copy keeps its id when the second one goes away
    single = extract_page(html.replace(f"{between}<p>{repeated}</p>", between))
    assert _by_text(single, "Check the soil").segment_id == copies[0].segment_id


def test_tiny_fragments_are_merged_not_dropped_and_headings_stay() -> None:
    html = """<html><body><article>
      <h1>Cold Brew at Home</h1>
      <p>Cold brew is coffee steeped in cold water for many hours, which gives a smooth and sweet cup.</p>
      <h2>What you need</h2><ul><li>Kettle</li><li>Coarse grinder for beans</li><li>Scale</li></ul>
      <h2>Summary</h2><p>Enjoy!</p>
      <h2>Tips</h2><p>Use filtered water because chlorine flattens the taste of the coffee a lot.</p><p>Done.</p>
    </article></body></html>"""
    page = extract_page(html)
    under = {}
    for segment in page.segments:
        if segment.kind != "heading":
            under.setdefault(segment.heading_path[-1], []).append(segment.text)
    # the first fragment joins the item after it, a later one the block before it
    assert under["What you need"] == ["Kettle; Coarse grinder for beans; Scale"]
    # a fragment alone under its heading is kept
    assert under["Summary"] == ["Enjoy!"]
    assert under["Tips"] == ["Use filtered water because chlorine flattens the taste of the coffee a lot. Done."]
    headings = [segment.text for segment in page.segments if segment.kind == "heading"]
    assert headings == ["Cold Brew at Home", "What you need", "Summary", "Tips"]


def test_definition_terms_join_their_definitions() -> None:
    html = """<html><body><article><h2>Glossary</h2><dl>
      <dt>Bloom</dt><dd>The burst of gas that fresh coffee releases when hot water first touches it.</dd>
      <dt>Cold brew concentrate</dt><dd>Coffee steeped at double strength, meant to be diluted before drinking.</dd>
    </dl></article></body></html>"""
    texts = [segment.text for segment in extract_page(html).segments if segment.kind != "heading"]
    assert texts[0].startswith("Bloom: The burst of gas")
    assert texts[1].startswith("Cold brew concentrate: Coffee steeped at double strength")


def test_long_paragraph_is_split_at_sentence_boundaries() -> None:
    sentences = [
        f"Sentence number {i} explains one more detail about steeping coffee in cold water." for i in range(60)
    ]
    paragraph = " ".join(sentences)
    assert len(paragraph) > 3 * MAX_SEGMENT_CHARS
    page = extract_page(f"<html><body><article><h2>Details</h2><p>{paragraph}</p></article></body></html>")
    chunks = [segment for segment in page.segments if segment.kind == "paragraph"]
    assert len(chunks) >= 4
    assert all(len(chunk.text) <= MAX_SEGMENT_CHARS for chunk in chunks)
    assert all(chunk.text.endswith("cold water.") for chunk in chunks)
    assert all(chunk.heading_path == ("Details",) for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks) == paragraph


def test_sentence_longer_than_a_chunk_is_cut_at_spaces() -> None:
    words = " ".join(f"word{i}" for i in range(800))  # one 6,000-character "sentence"
    page = extract_page(f"<html><body><article><p>{words}</p></article></body></html>")
    assert all(len(segment.text) <= MAX_SEGMENT_CHARS for segment in page.segments)
    assert " ".join(segment.text for segment in page.segments) == words


def test_malformed_html_still_yields_its_text() -> None:
    html = (
        "<html><body><div><p>First paragraph with <b>bold and <i>italic text</p><p>Second paragraph here"
        "</div></span><table><tr><td>a lonely table cell<td>another cell</table><li>an orphan list item"
        "</body></html></html><p>text after the end of the document"
    )
    text = _all_text(extract_page(html))
    for expected in ("first paragraph with bold and italic text", "second paragraph here", "a lonely table cell",
                     "an orphan list item"):  # fmt: skip
        assert expected in text


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   \n\t ",
        "<html><body></body></html>",
        "<html><head><title>Only a title</title></head><body>   </body></html>",
        "<html><body><script>var x = 1; console.log('a script full of words that are not content');</script>"
        "<style>body { color: red }</style></body></html>",
        "<!-- only a comment -->",
    ],
    ids=["empty", "whitespace", "empty-body", "title-only", "scripts-only", "comment-only"],
)
def test_pages_without_main_text_raise_no_content(html: str) -> None:
    with pytest.raises(NoContent, match=r"\w"):
        extract_page(html)


@pytest.mark.parametrize("decode", ["latin-1", "utf-8"])
def test_binary_garbage_raises_no_content(decode: str) -> None:
    garbage = os.urandom(50_000).decode(decode, errors="replace")
    with pytest.raises(NoContent, match="binary"):
        extract_page(garbage)


def test_nul_bytes_and_invalid_characters_are_removed() -> None:
    html = (
        "<html><body><article><h2>Nul\x00 heading</h2><p>Water the \x00plant when the top \x0binch is dry, "
        "lone \ud800 surrogates and \ufffe non-characters aside.</p></article></body></html>"
    )
    page = extract_page(html)
    text = "".join(segment.text for segment in page.segments)
    assert "Nul heading" in text
    assert "Water the plant when the top inch is dry" in text
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe]", text)


def test_str_with_xml_declaration_is_parsed() -> None:
    html = '<?xml version="1.0" encoding="utf-8"?><html><body><p>Crème brûlée needs a very hot grill to set its sugar crust.</p></body></html>'
    assert extract_page(html).segments[0].text == "Crème brûlée needs a very hot grill to set its sugar crust."


def test_deeply_nested_html_completes_and_keeps_its_text() -> None:
    inner = "<p>The text at the bottom of five thousand nested divs is still the main content.</p>"
    html = "<html><body>" + "<div>" * 5000 + inner + "</div>" * 5000 + "</body></html>"
    page = extract_page(html)
    assert "five thousand nested divs" in _all_text(page)


@pytest.mark.slow  # its point is the size: 100,000 paragraphs
def test_hundred_thousand_tiny_paragraphs_complete_without_losing_text() -> None:
    html = "<html><body>" + "".join(f"<p>item {i}</p>" for i in range(100_000)) + "</body></html>"
    page = extract_page(html)
    text = _all_text(page)
    # tiny fragments were merged into bounded segments, none dropped
    assert text.count("item ") == 100_000
    assert "item 0" in page.segments[0].text and page.segments[-1].text.endswith("item 99999")
    assert all(len(segment.text) <= MAX_SEGMENT_CHARS for segment in page.segments)


@pytest.mark.parametrize("count", [6_000, 100_000], ids=["main-extractor", "huge-page"])
def test_segments_are_capped_and_truncation_is_reported(count: int) -> None:
    html = (
        "<html><body><article>"
        + "".join(f"<p>Paragraph {i} says something different about caring for a houseplant.</p>" for i in range(count))
        + "</article></body></html>"
    )
    page = extract_page(html)
    assert page.truncated is True
    assert len(page.segments) == MAX_SEGMENTS
    assert page.segments[0].text.startswith("Paragraph 0 ")
    assert page.segments[-1].text.startswith(f"Paragraph {MAX_SEGMENTS - 1} ")


def test_fallback_walk_is_used_when_trafilatura_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module.trafilatura, "bare_extraction", lambda *args, **kwargs: None)
    page = extract_page(ARTICLE)
    assert page.extractor == "lxml-fallback"
    text = _all_text(page)
    for word in CLUTTER_WORDS:
        assert word not in text, f"{word!r} leaked through the fallback walk"
    assert _by_text(page, "Grind the beans").heading_path == (
        "How to Make Cold Brew Coffee at Home", "Choosing the coffee", "Grind size",
    )  # fmt: skip
    assert [s.text for s in page.segments if s.kind == "table_cell"][
        1
    ] == "Ready to drink | 100 grams | 800 millilitres"


def test_fallback_walk_is_used_when_trafilatura_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("extractor bug")

    monkeypatch.setattr(segment_module.trafilatura, "bare_extraction", broken)
    page = extract_page(ARTICLE)
    assert page.extractor == "lxml-fallback"
    assert "grind the beans very coarsely" in _all_text(page)


def test_fallback_keeps_a_wrapper_whose_name_only_sounds_like_clutter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment_module.trafilatura, "bare_extraction", lambda *args, **kwargs: None)
    html = """<html><body>
      <header><p>Leafy Living, the magazine for plant people everywhere.</p><nav><p>Shop gift vouchers now</p></nav></header>
      <div class="layout-with-sidebar">
        <div class="entry"><h2>Pruning</h2>
          <p>Prune a fiddle leaf fig in late spring, cutting just above a leaf node with clean shears.</p>
          <p>New branches usually appear below the cut within four to six weeks of pruning.</p></div>
        <div class="sidebar"><p>Popular this week: the ten best hanging baskets for balconies.</p></div>
        <aside><p>Sponsored: a robot lawn mower that trims the grass while you sleep.</p></aside>
      </div>
      <footer><p>Write to the editors about orchids, bonsai or anything else you grow.</p></footer>
    </body></html>"""
    page = extract_page(html)
    text = _all_text(page)
    assert "prune a fiddle leaf fig in late spring" in text
    assert "new branches usually appear below the cut" in text
    for clutter in ("magazine", "vouchers", "hanging baskets", "lawn mower", "orchids"):
        assert clutter not in text


def test_heading_permalink_marks_are_removed_but_real_hashes_stay() -> None:
    html = """<html><body><article>
      <h2>Using standalone mode <a href="#standalone">#</a></h2>
      <p>Standalone mode emits a Wasm file that does not need any JavaScript runtime code.</p>
      <h2>Learning C#</h2>
      <p>C# is a language with garbage collection that compiles to an intermediate form.</p>
    </article></body></html>"""
    headings = [s.text for s in extract_page(html).segments if s.kind == "heading"]
    assert headings == ["Using standalone mode", "Learning C#"]


def test_code_blocks_become_code_segments() -> None:
    html = """<html><body><article><h2>Build</h2>
      <p>Compile the program with the optimiser switched on, then run the binary it produces:</p>
      <pre><code>emcc -O3 add.c -o add.wasm
wasmtime add.wasm</code></pre>
      <p>The <code>-O3</code> flag keeps the output small enough to load quickly on slow phones.</p>
    </article></body></html>"""
    page = extract_page(html)
    code = [segment for segment in page.segments if segment.kind == "code"]
    assert [segment.text for segment in code] == ["emcc -O3 add.c -o add.wasm wasmtime add.wasm"]
    assert _by_text(page, "The -O3 flag keeps").kind == "paragraph"


def test_text_for_embedding_carries_the_innermost_heading(article: ExtractedPage) -> None:
    grind = _by_text(article, "Grind the beans")
    assert segment_text_for_embedding(grind) == f"Grind size: {grind.text}"
    heading = next(s for s in article.segments if s.kind == "heading" and s.text == "Grind size")
    assert segment_text_for_embedding(heading) == "Grind size"
    orphan = Segment("0" * 16, 0, "paragraph", 0, (), "Text before any heading.")
    assert segment_text_for_embedding(orphan) == "Text before any heading."


# --- the demo site shipped with the project ----------------------------------------


@pytest.fixture(scope="module")
def demo_page() -> ExtractedPage:
    return extract_page((DEMO / "site" / "index.html").read_text(encoding="utf-8"))


def test_demo_page_keeps_its_care_sections_and_drops_its_clutter(demo_page: ExtractedPage) -> None:
    assert demo_page.extractor == "trafilatura"
    assert demo_page.title == "Caring for a Fiddle Leaf Fig"
    text = _all_text(demo_page)
    # the sidebar, comments and footer are where the uncovered topics are mentioned
    for word in ("propagat", "cutting", "toxic", "poison", "cats", "brown spots", "spider mites", "neem",
                 "cookies", "newsletter", "advertisement", "monstera", "reply"):  # fmt: skip
        assert word not in text, f"{word!r} leaked from the demo page clutter"
    sections = {segment.heading_path[1] for segment in demo_page.segments if len(segment.heading_path) > 1}
    for topic in ("Light", "Water", "Soil", "Repot", "Fertilizer", "Humidity"):
        assert any(topic in section for section in sections), topic
    kinds = {segment.kind for segment in demo_page.segments}
    assert {"heading", "paragraph", "list_item", "table_cell", "blockquote"} <= kinds
    body = [segment for segment in demo_page.segments if segment.kind != "heading"]
    assert len(body) >= 20


def test_demo_about_page_extracts() -> None:
    page = extract_page((DEMO / "site" / "about.html").read_text(encoding="utf-8"))
    assert "how we test our advice" in _all_text(page)
    assert "cookies" not in _all_text(page)


def test_demo_queries_are_a_search_console_export_matching_expected_topics() -> None:
    with (DEMO / "queries.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Top queries", "Clicks", "Impressions", "CTR", "Position"]
    body = rows[1:]
    assert 40 <= len(body) <= 60
    for query, clicks, impressions, ctr, position in body:
        assert re.fullmatch(r"\d+(\.\d{1,2})?%", ctr), ctr
        assert abs(float(ctr[:-1]) - 100 * int(clicks) / int(impressions)) < 0.01
        assert 1 <= float(position) <= 100
    expected = json.loads((DEMO / "expected.json").read_text(encoding="utf-8"))
    gap_queries = {q for queries in expected["gap_topics"].values() for q in queries}
    covered_queries = {q for queries in expected["covered_topics"].values() for q in queries}
    assert len(expected["gap_topics"]) >= 2 and len(expected["covered_topics"]) >= 3
    assert not gap_queries & covered_queries
    assert gap_queries | covered_queries == {row[0] for row in body}
    positions = {row[0]: float(row[4]) for row in body}
    assert all(8 <= positions[q] <= 25 for q in gap_queries)
    assert all(2 <= positions[q] <= 8 for q in covered_queries)


# --- the page's root heading (its h1, or its title) ----------------------------------

_INTRO = (
    "<p>Repotting a monstera every two years keeps its roots healthy and its leaves large.</p>"
    "<p>Most plants tell you when they need it: roots circle the pot or poke out of the drainage holes.</p>"
)
_SECTIONS = (
    "<h2>Choosing the pot</h2><p>Pick a pot five centimetres wider than the old one, with drainage holes.</p>"
    "<h2>Fresh soil</h2><p>Mix potting soil with orchid bark and perlite so that water drains quickly.</p>"
    "<h3>Watering after</h3><p>Water thoroughly once, then wait until the top soil is dry again.</p>"
)


def _page(head: str, body: str) -> ExtractedPage:
    return extract_page(f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>")


def test_every_heading_path_starts_at_the_h1_those_before_the_first_subheading_included() -> None:
    page = _page(
        "<title>Repotting | Leafly</title>",
        f"<article><header><h1>How to Repot a Monstera</h1></header>{_INTRO}{_SECTIONS}</article>",
    )
    root = "How to Repot a Monstera"
    assert all(segment.heading_path[0] == root for segment in page.segments)
    intro = _by_text(page, "Repotting a monstera every two years")
    assert (intro.heading_level, intro.heading_path) == (1, (root,))
    assert _by_text(page, "Water thoroughly").heading_path == (root, "Fresh soil", "Watering after")
    # The root is shared by every segment: it names the place, it is not embedded.
    assert segment_text_for_embedding(intro) == intro.text
    pot = _by_text(page, "Pick a pot")
    assert segment_text_for_embedding(pot) == f"Choosing the pot: {pot.text}"


def test_a_page_without_h1_is_rooted_at_its_title_without_the_site_name() -> None:
    page = _page("<title>How to Repot a Monstera | Leafly</title>", f"<article>{_INTRO}{_SECTIONS}</article>")
    root = "How to Repot a Monstera"
    assert all(segment.heading_path[0] == root for segment in page.segments)
    intro = _by_text(page, "Most plants tell you")
    assert (intro.heading_level, intro.heading_path) == (1, (root,))
    assert _by_text(page, "Pick a pot").heading_path == (root, "Choosing the pot")
    assert segment_text_for_embedding(intro) == intro.text
    # A title whose last part is not a short site name is kept whole.
    whole = _page("<title>Repotting - Roots, Pots and Soil</title>", f"<article>{_INTRO}</article>")
    assert {segment.heading_path for segment in whole.segments} == {("Repotting - Roots, Pots and Soil",)}


def test_the_root_is_the_pages_h1_not_the_sites_logo_or_a_sidebar_box() -> None:
    page = _page(
        "<title>How to Repot a Monstera · Leafly</title>",
        "<header><h1><a href='/'>Leafly</a></h1><nav><a href='/a'>Plants</a></nav></header>"
        f"<main><article><h1>How to Repot a Monstera</h1>{_INTRO}{_SECTIONS}</article>"
        "<aside><h1>Subscribe to our newsletter</h1><p>Weekly plant tips in your inbox.</p></aside></main>",
    )
    assert {segment.heading_path[0] for segment in page.segments} == {"How to Repot a Monstera"}


def test_a_page_with_neither_h1_nor_title_keeps_its_own_headings() -> None:
    page = _page("", f"<article>{_INTRO}{_SECTIONS}</article>")
    intro = _by_text(page, "Repotting a monstera every two years")
    assert (intro.heading_level, intro.heading_path) == (0, ())
    pot = _by_text(page, "Pick a pot")
    assert pot.heading_path == ("Choosing the pot",)
    assert segment_text_for_embedding(pot) == f"Choosing the pot: {pot.text}"
