"""The main content of an HTML page, split into headed segments ready to embed.

trafilatura finds the main content (it leaves out navigation, headers, footers,
sidebars, comments, ads, scripts and cookie banners) and returns it as a small
XML tree (head/p/list/item/table/row/cell/quote/code). That tree is walked to
build segments that remember the headings they sit under.

When trafilatura finds nothing, or the page is too large for it to finish
quickly, a conservative walk of <main>, <article> or <body> is used instead:
it drops nav/header/footer/aside/form/script/style and elements whose role,
id or class mark them as navigation, cookie banners, comments or sidebars.
The extractor that produced a page is named in ``ExtractedPage.extractor``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice

import lxml.html
import trafilatura
from lxml import etree

LOGGER = logging.getLogger(__name__)

MAX_SEGMENTS = 5_000
MAX_SEGMENT_CHARS = 1_200
MIN_WORDS = 3
# trafilatura's cost grows with the tree and reaches several seconds past ~50,000
# elements; pages that large are dumps or listings, so the linear walk takes them.
HUGE_PAGE_ELEMENTS = 40_000
# Share of control or replacement characters above which input is not text at all.
BINARY_CHAR_SHARE = 0.10

EXTRACTOR_TRAFILATURA = "trafilatura"
EXTRACTOR_FALLBACK = "lxml-fallback"

SegmentKind = str  # "paragraph" | "list_item" | "heading" | "table_cell" | "blockquote" | "code"


class NoContent(Exception):
    """The page has no main text to analyse."""


@dataclass(frozen=True)
class Segment:
    """One block of main content.

    ``heading_path`` holds the texts of the enclosing headings, outermost first;
    a heading segment's own text is the last entry of its path. The first entry
    is the page's root: its h1, or its title when it has none (``_page_root``),
    for every segment, those before the first subheading included, so that
    every passage has a place name. ``heading_level`` is the level of the
    innermost enclosing heading (1 under the root alone, 0 on a page with
    neither h1 nor title and before its first heading), or a heading segment's
    own level. Table segments are whole rows, cells joined by " | ", so that a
    value stays next to its label.
    """

    segment_id: str
    position: int
    kind: SegmentKind
    heading_level: int
    heading_path: tuple[str, ...]
    text: str


@dataclass
class ExtractedPage:
    title: str | None
    meta_description: str | None
    language: str | None
    segments: list[Segment]
    extractor: str
    truncated: bool = False  # True when segments were capped at MAX_SEGMENTS


def extract_page(html: str, url: str | None = None) -> ExtractedPage:
    """Extract the main content of ``html`` as headed segments.

    Raises NoContent when the page has no main text: empty input, markup with
    only scripts or boilerplate, or bytes that are not text.
    """
    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    if not html or not html.strip():
        raise NoContent("the page is empty")
    if _looks_binary(html):
        raise NoContent("the page looks like binary data, not HTML text")
    root = _parse(_INVALID_XML_CHARS.sub("", html))
    if root is None:
        raise NoContent("the page has no parsable HTML")

    title, description, language = _metadata(root)
    page_root = _page_root(root, title)  # before the content walk, which may strip furniture from root
    blocks, extractor = _main_content_blocks(root, url)
    segments, truncated = _segments_from_blocks(_rooted(blocks, page_root))
    if not segments:
        raise NoContent("no main text found in the page (empty body, scripts or boilerplate only)")
    return ExtractedPage(
        title=title,
        meta_description=description,
        language=language,
        segments=segments,
        extractor=extractor,
        truncated=truncated,
    )


def headings_below_root(heading_path: Sequence[str], heading_level: int) -> tuple[str, ...]:
    """The headings of a path below the page's root (its h1 or title), outermost first.

    The root is the first entry of every path of a page that has an h1 or a title;
    a one-entry path is the root alone when its level is 1 (a page's only other
    one-entry paths are its own top headings, level 2 and below, on a page with
    neither h1 nor title).
    """
    path = tuple(heading_path)
    if len(path) > 1:
        return path[1:]
    if path and heading_level <= 1:
        return ()
    return path


def segment_text_for_embedding(segment: Segment) -> str:
    """The text to embed for a segment: its innermost heading below the page's root, then its text.

    Queries often echo a section heading ("how often to water ..."), so a
    segment is embedded with the heading it sits under. Only the innermost
    heading is used, and never the root: outer ones (above all the page's h1 or
    title, which every segment shares) pull every segment toward every query
    about the page's subject. On the demo page, innermost-heading + text
    separated covered from uncovered queries better than the text alone or the
    whole heading path. A heading segment, and a segment under the root alone,
    embed their own text.
    """
    below = headings_below_root(segment.heading_path, segment.heading_level)
    if segment.kind == "heading" or not below:
        return segment.text
    return f"{below[-1]}: {segment.text}"


# --- input cleaning and parsing -------------------------------------------------

# Characters lxml refuses (NUL, other C0 controls, lone surrogates, non-characters).
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# C0/C1 controls and U+FFFD: a few appear in real pages, many only in binary data.
_BINARY_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
# Wrapper tags removed when the page nests deeper than libxml2 accepts.
_WRAPPER_TAGS = re.compile(r"</?(?:div|span|section|font|center)\b[^>]*>", re.IGNORECASE)


def _looks_binary(html: str) -> bool:
    sample = html[:65_536]
    return len(_BINARY_CHARS.findall(sample)) > BINARY_CHAR_SHARE * len(sample)


def _parse(html: str) -> lxml.html.HtmlElement | None:
    root, too_deep = _parse_once(html)
    if root is None or not too_deep:
        return root
    # libxml2 drops everything below depth 256; without the wrapper tags the
    # text of such pages sits shallow enough to be kept.
    flattened, _ = _parse_once(_WRAPPER_TAGS.sub(" ", html))
    return flattened if flattened is not None else root


def _parse_once(html: str) -> tuple[lxml.html.HtmlElement | None, bool]:
    """The parsed page, and whether the parser hit its nesting limit."""
    parser = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        # Bytes with an explicit encoding: str input with an XML declaration is refused.
        root = lxml.html.document_fromstring(html.encode("utf-8", errors="replace"), parser=parser)
    except (etree.ParserError, ValueError) as error:
        LOGGER.debug("HTML parse failed: %s", error)
        return None, False
    return root, any(entry.type_name == "ERR_RESOURCE_LIMIT" for entry in parser.error_log)


def _metadata(root: lxml.html.HtmlElement) -> tuple[str | None, str | None, str | None]:
    meta: dict[str, str] = {}
    for element in root.iter("meta"):
        key = (element.get("property") or element.get("name") or element.get("http-equiv") or "").strip().lower()
        content = _normalize(element.get("content") or "")
        if key and content and key not in meta:
            meta[key] = content
    title_element = root.find(".//title")
    title_text = _normalize(title_element.text_content()) if title_element is not None else ""
    title = meta.get("og:title") or title_text or meta.get("twitter:title") or None
    description = meta.get("description") or meta.get("og:description") or meta.get("twitter:description") or None
    language = (root.get("lang") or root.get("xml:lang") or meta.get("content-language") or "").strip()
    if not language and meta.get("og:locale"):
        language = meta["og:locale"]
    language = language.split(",")[0].strip().replace("_", "-")
    return title, description, language or None


# --- the page's root heading -------------------------------------------------------

# An h1 inside these is the site's, not the page's (a logo, a comment form, a sidebar box).
_ROOT_FURNITURE_TAGS = {"nav", "aside", "footer", "form", "dialog", "menu", "template", "noscript"}
_ROOT_FURNITURE_NAME = re.compile(
    r"(^|[-_ ])(nav|navbar|menu|comments?|sidebar|related|newsletter|optin|subscribe|footer|breadcrumbs?|"
    r"next-post|prev-post)($|[-_ ])",
    re.IGNORECASE,
)
# " | Site", " - Site", " · Site", " — Site" at the end of a title: the site's name, not the page's.
_TITLE_SITE_SUFFIX = re.compile(r"^(?P<page>.+?)\s+[|·•–—-]\s+(?P<site>[^|·•–—-]+)$")


def _page_root(root: lxml.html.HtmlElement, title: str | None) -> str | None:
    """The page's own h1, or its title (without a site-name suffix) when it has none.

    Of several h1s, the page's is the one outside navigation, sidebars, forms and
    footers that shares the most words with the title; then one inside <main> or
    <article>; then the first.
    """
    title_words = {w.casefold() for w in _WORDS.findall(title or "")}
    best: tuple[int, int, int] | None = None
    chosen: str | None = None
    for order, element in enumerate(root.iter("h1")):
        text = _PERMALINK_MARK.sub("", _normalize(_inline_text(element)))
        if not _WORD.search(text) or _in_root_furniture(element):
            continue
        overlap = len({w.casefold() for w in _WORDS.findall(text)} & title_words)
        in_content = any(a.tag in ("main", "article") for a in element.iterancestors())
        key = (overlap, int(in_content), -order)
        if best is None or key > best:
            best, chosen = key, text[:MAX_SEGMENT_CHARS]
    if chosen:
        return chosen
    if not title:
        return None
    match = _TITLE_SITE_SUFFIX.match(title)
    if match and len(_WORDS.findall(match["site"])) <= min(3, len(_WORDS.findall(match["page"])) - 1):
        return match["page"].strip()
    return title[:MAX_SEGMENT_CHARS]


def _in_root_furniture(element: etree._Element) -> bool:
    for ancestor in element.iterancestors():
        if ancestor.tag in _ROOT_FURNITURE_TAGS or (ancestor.get("role") or "").lower() in _DROPPED_ROLES - {"banner"}:
            return True
        if _ROOT_FURNITURE_NAME.search(f"{ancestor.get('id') or ''} {ancestor.get('class') or ''}"):
            return True
    return False


def _rooted(blocks: Iterable[_Block], page_root: str | None) -> Iterator[_Block]:
    """Blocks whose heading paths start at the page's root; those under no heading sit under it at level 1."""
    if not page_root:
        yield from blocks
        return
    key = page_root.casefold()
    for block in blocks:
        if block.path and block.path[0].casefold() == key:
            yield block
        elif not block.path:
            yield replace(block, path=(page_root,), level=1)
        else:
            yield replace(block, path=(page_root, *block.path))


# --- finding the main content ------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    kind: SegmentKind
    level: int
    path: tuple[str, ...]
    text: str
    leads: bool = False  # a label for what follows: a definition term, or a short "You need:"


def _main_content_blocks(root: lxml.html.HtmlElement, url: str | None) -> tuple[Iterator[_Block], str]:
    if _count_elements(root, HUGE_PAGE_ELEMENTS) < HUGE_PAGE_ELEMENTS:
        body = _trafilatura_body(root, url)
        if body is not None:
            blocks = list(_walk(body))
            if any(block.kind != "heading" for block in blocks):
                return iter(blocks), EXTRACTOR_TRAFILATURA
    return _walk(_fallback_container(root)), EXTRACTOR_FALLBACK


def _count_elements(root: etree._Element, limit: int) -> int:
    return sum(1 for _ in islice(root.iter(), limit))


def _trafilatura_body(root: lxml.html.HtmlElement, url: str | None) -> etree._Element | None:
    try:
        document = trafilatura.bare_extraction(
            root,  # trafilatura copies a tree it is handed, so root stays intact
            url=url,
            include_comments=False,
            include_tables=True,
            include_formatting=False,
            include_links=False,
            include_images=False,
            with_metadata=False,
        )
    except Exception:  # a failing extractor must not take the page down: the fallback runs
        LOGGER.warning("trafilatura failed on %s", url or "page", exc_info=True)
        return None
    return None if document is None else document.body


# Page furniture. Not "head": that is trafilatura's heading tag, and the HTML <head>
# is never inside the container that is walked.
_DROPPED_TAGS = {
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
    "button", "select", "textarea", "iframe", "svg", "canvas", "dialog", "object", "embed",
    "menu", "title", "meta", "link",
}  # fmt: skip
_DROPPED_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog"}
_CLUTTER_NAME = re.compile(
    r"(^|[-_ ])(nav|navbar|menu|cookie|cookies|consent|gdpr|banner|comments?|sidebar|related|"
    r"share|social|advert|ads|promo|newsletter|footer|header|breadcrumbs?)($|[-_ ])",
    re.IGNORECASE,
)


def _fallback_container(root: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    """<main>, else the largest <article>, else <body>, stripped of page furniture."""
    container = root.find(".//main")
    if container is None:
        articles = root.findall(".//article")
        container = max(articles, key=lambda a: len(a.text_content())) if articles else None
    if container is None:
        container = root.find(".//body")
    if container is None:
        container = root
    total_chars = len(container.text_content())
    doomed = [element for element in container.iterdescendants() if _is_furniture(element, total_chars)]
    for element in doomed:
        element.drop_tree()
    return container


def _is_furniture(element: lxml.html.HtmlElement, total_chars: int) -> bool:
    if not isinstance(element.tag, str) or element.tag in _DROPPED_TAGS:
        return True
    if (element.get("role") or "").lower() in _DROPPED_ROLES:
        return True
    if not _CLUTTER_NAME.search(f"{element.get('id') or ''} {element.get('class') or ''}"):
        return False
    # A name can mislead ("content-with-sidebar", "entry-header"): keep what holds the title or most of the text.
    return element.find(".//h1") is None and len(element.text_content()) < total_chars / 2


# --- walking a content tree into blocks ------------------------------------------

# Tags of trafilatura's output and of plain HTML, by the part they play.
_HEADING_TAGS = {"head", "h1", "h2", "h3", "h4", "h5", "h6"}
_LEAF_KINDS = {
    "p": "paragraph",
    "item": "list_item",
    "li": "list_item",
    "dt": "list_item",
    "dd": "list_item",
    "quote": "blockquote",
    "blockquote": "blockquote",
    "pre": "code",
    "figcaption": "paragraph",
    "caption": "paragraph",
    "address": "paragraph",
}
_ROW_TAGS = {"row", "tr"}
_CELL_TAGS = {"cell", "td", "th"}
_CONTAINER_TAGS = {
    "body", "html", "div", "section", "article", "main", "list", "ul", "ol", "dl", "table",
    "thead", "tbody", "tfoot", "figure", "details", "summary", "center", "fieldset", "hgroup",
    "cell", "td", "th", "row", "tr",
}  # fmt: skip
_CONTAINER_ROLE = "container"
_BLOCK_DESCENDANTS = tuple(_HEADING_TAGS | set(_LEAF_KINDS) | {"div", "table", "ul", "ol", "list", "section"})
_LINE_BREAK_TAGS = ("br", "lb", "hr")


def _role(element: etree._Element, parent_role: str) -> str | None:
    """A block role for element, or None when it is inline text of its parent."""
    tag = element.tag
    if tag in _HEADING_TAGS:
        return "heading"
    if tag in _LEAF_KINDS:
        return _LEAF_KINDS[tag]
    if tag == "code":
        # trafilatura puts code blocks at block level and inline code inside paragraphs
        return "code" if parent_role == _CONTAINER_ROLE else None
    if tag in _ROW_TAGS:
        has_blocks = any(True for _ in element.iterdescendants(*_BLOCK_DESCENDANTS))
        return _CONTAINER_ROLE if has_blocks else "row"
    if tag in _CONTAINER_TAGS:
        return _CONTAINER_ROLE
    return None


class _Frame:
    __slots__ = ("element", "role", "parts", "children")

    def __init__(self, element: etree._Element, role: str) -> None:
        self.element = element
        self.role = role
        self.parts: list[str] = [element.text or ""]
        self.children = iter(element)


def _walk(container: etree._Element) -> Iterator[_Block]:
    """Yield blocks in document order; iterative so deep trees cannot exhaust the stack."""
    for element in container.iter(*_LINE_BREAK_TAGS):
        element.tail = " " + (element.tail or "")
    headings: list[tuple[int, str]] = []
    frames = [_Frame(container, _CONTAINER_ROLE)]
    while frames:
        frame = frames[-1]
        child = next(frame.children, None)
        if child is None:
            frames.pop()
            yield from _flush(frame, headings)
            if frames:
                frames[-1].parts.append(frame.element.tail or "")
            continue
        if not isinstance(child.tag, str) or child.tag in _DROPPED_TAGS:
            frame.parts.append(child.tail or "")
            continue
        role = _role(child, frame.role)
        if role is None:
            frame.parts.append(_inline_text(child))
            frame.parts.append(child.tail or "")
            continue
        yield from _flush(frame, headings)
        if role == "row":
            cells = [_normalize(_inline_text(cell)) for cell in child if cell.tag in _CELL_TAGS]
            text = " | ".join(cell for cell in cells if cell)
            if text:
                yield _block("table_cell", text, headings)
            frame.parts.append(child.tail or "")
            continue
        frames.append(_Frame(child, role))


def _flush(frame: _Frame, headings: list[tuple[int, str]]) -> Iterator[_Block]:
    text = _normalize("".join(frame.parts))
    frame.parts.clear()
    if not text:
        return
    if frame.role == "heading":
        text = _PERMALINK_MARK.sub("", text)
        if not _WORD.search(text):
            return
        level = _heading_level(frame.element, headings)
        while headings and headings[-1][0] >= level:
            headings.pop()
        headings.append((level, text))
        yield _Block("heading", level, tuple(heading for _, heading in headings), text)
        return
    if not _WORD.search(text):
        return  # bullets, separators and other punctuation-only leftovers
    kind = "paragraph" if frame.role == _CONTAINER_ROLE else frame.role
    leads = _is_term(frame.element) or (text.endswith(":") and len(_WORDS.findall(text)) < MIN_WORDS)
    yield _block(kind, text, headings, leads=leads)


def _block(kind: SegmentKind, text: str, headings: list[tuple[int, str]], leads: bool = False) -> _Block:
    level = headings[-1][0] if headings else 0
    return _Block(kind, level, tuple(heading for _, heading in headings), text, leads)


def _is_term(element: etree._Element) -> bool:
    return element.tag == "dt" or (element.tag == "item" and (element.get("rend") or "").startswith("dt"))


def _heading_level(element: etree._Element, headings: list[tuple[int, str]]) -> int:
    name = element.get("rend") if element.tag == "head" else element.tag
    if name and len(name) == 2 and name[0] == "h" and name[1] in "123456":
        return int(name[1])
    # no level given: nest under the current heading
    return min((headings[-1][0] + 1) if headings else 2, 6)


def _inline_text(element: etree._Element) -> str:
    return "".join(text for text in element.itertext() if isinstance(text, str))


_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w", re.UNICODE)
_WORDS = re.compile(r"\w+", re.UNICODE)
# Permalink anchors that sites append to headings ("Setup #", "Setup¶"); "C#" stays.
_PERMALINK_MARK = re.compile(r"(\s+#+|\s*[¶🔗]+)$")


def _normalize(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


# --- from blocks to segments -------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")
_ENDS_LIKE_SENTENCE = re.compile(r"[.!?…:;。！？]$")


def _segments_from_blocks(blocks: Iterable[_Block]) -> tuple[list[Segment], bool]:
    merged = list(islice(_merge_tiny(_split_long(blocks)), MAX_SEGMENTS + 1))
    truncated = len(merged) > MAX_SEGMENTS
    merged = merged[:MAX_SEGMENTS]
    occurrences: Counter[tuple[tuple[str, ...], str]] = Counter()
    segments = []
    for position, block in enumerate(merged):
        key = (block.path, block.text)
        occurrence = occurrences[key]
        occurrences[key] += 1
        segments.append(
            Segment(
                segment_id=_segment_id(block.path, block.text, occurrence),
                position=position,
                kind=block.kind,
                heading_level=block.level,
                heading_path=block.path,
                text=block.text,
            )
        )
    return segments, truncated


def _segment_id(path: tuple[str, ...], text: str, occurrence: int) -> str:
    # Position is left out on purpose: an unchanged block keeps its id when others move.
    key = "\x1f".join(path) + "\x1e" + text + "\x1e" + str(occurrence)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _split_long(blocks: Iterable[_Block]) -> Iterator[_Block]:
    for block in blocks:
        if len(block.text) <= MAX_SEGMENT_CHARS:
            yield block
        elif block.kind == "heading":
            yield replace(block, text=_chunks(block.text)[0])
        else:
            for chunk in _chunks(block.text):
                yield replace(block, text=chunk)


def _chunks(text: str) -> list[str]:
    """Pack whole sentences into chunks of at most MAX_SEGMENT_CHARS."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        pieces.extend(_cut_words(sentence) if len(sentence) > MAX_SEGMENT_CHARS else [sentence])
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > MAX_SEGMENT_CHARS:
            chunks.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _cut_words(text: str) -> list[str]:
    """Cut a sentence longer than a chunk at spaces (or anywhere when it has none)."""
    cuts = []
    while len(text) > MAX_SEGMENT_CHARS:
        cut = text.rfind(" ", 0, MAX_SEGMENT_CHARS + 1)
        if cut <= 0:
            cut = MAX_SEGMENT_CHARS
        cuts.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        cuts.append(text)
    return cuts


def _is_tiny(block: _Block) -> bool:
    return len(_WORDS.findall(block.text)) < MIN_WORDS


def _join(left: _Block, right: _Block) -> str:
    if _ENDS_LIKE_SENTENCE.search(left.text):
        return f"{left.text} {right.text}"
    return f"{left.text}{': ' if left.leads else '; '}{right.text}"


def _merge_tiny(blocks: Iterable[_Block]) -> Iterator[_Block]:
    """Merge fragments of fewer than MIN_WORDS words into a neighbour under the same heading.

    A fragment joins the block before it, unless it is the first block under
    its heading: then it joins the block after it. A label (definition term,
    short "You need:") always joins the block after it, whatever its length.
    Headings are never merged, and a fragment with no neighbour under its
    heading is kept alone rather than dropped.
    """
    held: _Block | None = None
    for block in blocks:
        if block.kind == "heading":
            if held is not None:
                yield held
                held = None
            yield block
            continue
        if held is not None and held.path == block.path:
            fits = len(held.text) + 2 + len(block.text) <= MAX_SEGMENT_CHARS
            if fits and _is_tiny(block) and not block.leads:
                held = replace(held, text=_join(held, block))
                continue
            if fits and (held.leads or _is_tiny(held)):
                held = replace(block, text=_join(held, block))
                continue
        if held is not None:
            yield held
        held = block
    if held is not None:
        yield held
