"""Search Console keyword data: the UI's Performance export, page-and-query CSVs and the Search Analytics API.

File imports are all or nothing: a parse either returns every row or raises
GscFormatError naming the file, the line and the column, so a half-read file
never reaches an analysis.

Duplicate queries inside one file (the same text after whitespace and case
folding) are merged: clicks and impressions are summed, the position is
weighted by impressions and the CTR is recomputed. `GscExport.duplicates_merged`
says how many rows were folded in that way; rows of different pages are never merged.

The encoding (UTF-8 with or without BOM, UTF-16 LE/BE, cp1252) and the delimiter
(comma, semicolon, tab) are detected. docs/SEARCH_CONSOLE.md shows the formats
read and every message.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import gc
import io
import logging
import math
import random
import re
import stat
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from urllib.parse import quote

import httpx
import jwt
from pydantic import ValidationError

from pageperfect.models import MAX_QUERY_CHARS, KeywordFilters, KeywordRow
from pageperfect.sources.guard import GuardError, normalize_url
from pageperfect.sources.retry_after import retry_after_seconds

log = logging.getLogger(__name__)

MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_ZIP_MEMBERS = 200
MAX_POSITION = 1000.0  # KeywordRow.position's limit
_INF = math.inf

QUERIES_FILE = "Queries.csv"
FILTERS_FILE = "Filters.csv"

# Canonical column -> header spellings accepted (compared after _header_key): the Search Console UI, its
# Search Analytics API exporters (Search Analytics for Sheets, Screaming Frog) and Looker Studio's connector.
PAGE_SPELLINGS = (
    "page",
    "pages",
    "top pages",
    "landing page",
    "landing pages",
    "url",
    "urls",
    "page url",
    "landing page url",
    "address",
)
_QUERY_COLUMNS: dict[str, tuple[str, ...]] = {
    "query": (
        "top queries",
        "top query",
        "queries",
        "query",
        "search query",
        "search queries",
        "search term",
        "keyword",
        "keywords",
    ),
    "clicks": ("clicks", "url clicks", "site clicks", "total clicks"),
    "impressions": ("impressions", "url impressions", "site impressions", "total impressions"),
    "ctr": ("ctr", "click through rate", "url ctr", "site ctr", "average ctr"),
    "position": ("position", "average position", "avg position", "avg. position", "average rank"),
}
_PAGE_QUERY_COLUMNS: dict[str, tuple[str, ...]] = {"page": PAGE_SPELLINGS, **_QUERY_COLUMNS}
# How a column is named in messages.
_DISPLAY = {
    "page": "page",
    "query": "Top queries",
    "clicks": "Clicks",
    "impressions": "Impressions",
    "ctr": "CTR",
    "position": "Position",
}
_EXPECTED = {
    "page": "a page column (Page, Landing Page, URL, Address or Top pages)",
    "query": "Top queries (or Query)",
}
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-bom": "UTF-8 with BOM",
    "utf-16-le": "UTF-16 LE",
    "utf-16-be": "UTF-16 BE",
    "cp1252": "Windows-1252 (cp1252)",
    "text": "text",
}

NO_ROWS = (
    "has a header and no rows: Search Console found no queries for the export's dates and filters "
    "(widen them and export again)"
)
HOW_TO_EXPORT_ONE_PAGE = (
    "to export one page's queries, open Performance in Search Console, click + New, choose Page..., then "
    "Exact URL, enter the page's address and Apply, then Export; a page-and-query file (Page, Query, Clicks, "
    "Impressions, CTR, Position) imports many pages at once"
)
SITE_WIDE_FLAG = "if the whole site's queries are meant for this page, say so with --site-wide (API: site_wide=true)"


class GscFormatError(ValueError):
    """A Search Console file that cannot be read as a whole; says where and why."""

    def __init__(self, message: str, *, source: str, line: int | None = None, column: str | None = None):
        where = source
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f", column {column}"
        # File-level messages read as a sentence ("Queries.csv is empty"), located ones after a colon.
        separator = " " if line is None and column is None else ": "
        super().__init__(f"{where}{separator}{message}")
        self.source = source
        self.line = line
        self.column = column


@dataclass
class GscExport:
    """What a Performance export or a page-and-query file holds for the analysis.

    A one-page export (Queries.csv, alone or in the UI's ZIP) has its rows in `rows`; a page-and-query file
    has them in `pages`, by page URL as written, and `rows` is empty: `pages_for_import` gives either
    shape for an import.
    """

    rows: list[KeywordRow]
    date_range: str | None
    page: str | None
    files: list[str]
    duplicates_merged: int = 0
    page_filter: str | None = None  # Filters.csv's Page value as written, operator included ("+/blog/")
    pages: dict[str, list[KeywordRow]] | None = None
    has_filters_file: bool = False  # the ZIP carried Filters.csv: a missing page filter means site-wide
    encoding: str = "UTF-8"
    delimiter: str = ","
    source: str = QUERIES_FILE  # the upload's name, for messages


# --------------------------------------------------------------------------- CSV


def _header_key(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").replace("_", " ").replace("-", " ").lower().split())


def _sniff_encoding(data: bytes) -> tuple[str, int, str]:
    """(codec, BOM length, name for messages): the BOM, else UTF-16's NUL bytes, else UTF-8 (cp1252 on retry)."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8", 3, ENCODINGS["utf-8-bom"]
    if data.startswith(codecs.BOM_UTF16_LE):  # spreadsheet "Unicode text" saves
        return "utf-16-le", 2, ENCODINGS["utf-16-le"]
    if data.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2, ENCODINGS["utf-16-be"]
    head = data[:4096]
    if b"\x00" in head:  # ASCII text in UTF-16 without a BOM: every other byte is NUL
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd > even and odd * 4 > len(head):
            return "utf-16-le", 0, ENCODINGS["utf-16-le"]
        if even > odd and even * 4 > len(head):
            return "utf-16-be", 0, ENCODINGS["utf-16-be"]
    return "utf-8", 0, ENCODINGS["utf-8"]


def _text_stream(data: bytes | str, codec: str, bom: int) -> TextIO:
    """The text for csv.reader, decoded lazily so a large upload is not held twice."""
    if isinstance(data, str):
        return io.StringIO(data.removeprefix("\ufeff"), newline="")
    buffer = io.BytesIO(data)
    buffer.seek(bom)
    return io.TextIOWrapper(buffer, encoding=codec, newline="")


def decode_text(data: bytes | str) -> str:
    """A small file's whole text, with the same detection as the CSV reader (Filters.csv)."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    codec, bom, _ = _sniff_encoding(data)
    try:
        return data[bom:].decode(codec)
    except UnicodeDecodeError:
        return data[bom:].decode("cp1252", errors="replace")


class _NotUtf8(Exception):
    """Raised inside a UTF-8 read without a BOM: the file is read again as cp1252."""


class _Table:
    """A CSV file's header, matched to the wanted columns, and its records.

    The encoding and the delimiter are detected; the header is matched case- and
    whitespace-insensitively; extra columns are ignored. Iterating yields (line where
    the record starts, fields).
    """

    def __init__(
        self,
        data: bytes | str,
        source: str,
        columns: dict[str, tuple[str, ...]],
        optional: dict[str, tuple[str, ...]] | None = None,
        codec: str | None = None,
    ):
        self.source = source
        self._data = data
        bom = 0
        if isinstance(data, str):
            self._codec, self.encoding = "text", ENCODINGS["text"]
        elif codec is not None:
            self._codec, self.encoding = codec, ENCODINGS[codec]
        else:
            self._codec, bom, self.encoding = _sniff_encoding(data)
        self._retry_as_cp1252 = isinstance(data, bytes) and codec is None and self._codec == "utf-8" and not bom
        self._stream = _text_stream(data, self._codec, bom)
        self._next_line = 1
        with self._located():
            found = self._header_line()
        if found is None:
            raise GscFormatError("is empty", source=source)
        header_line, line, forced = found
        wanted = {**columns, **(optional or {})}
        self.delimiter, header = _pick_delimiter(header_line, wanted, forced)
        self.decimal_comma = self.delimiter != ","
        self.width = len(header)
        self.index, self.names = _match_header(header, self, columns, optional or {}, line)
        self.positions = tuple(self.index[name] for name in ("query", "clicks", "impressions", "ctr", "position"))
        self._offset = line
        self._next_line = line + 1
        self._reader = csv.reader(self._stream, delimiter=self.delimiter, strict=True)

    def _header_line(self) -> tuple[str, int, str | None] | None:
        """The first line that is not blank, its number, and the delimiter an Excel "sep=;" line forces."""
        forced = None
        for line, raw in enumerate(self._stream, start=1):
            self._next_line = line
            text = raw.strip().lstrip("\ufeff").strip()
            if not text:
                continue
            if forced is None and len(text) == 5 and text.lower().startswith("sep="):
                forced = text[4]
                continue
            return raw, line, forced
        return None

    def _advance(self) -> int:
        line, self._next_line = self._next_line, self._offset + self._reader.line_num + 1
        return line

    @contextlib.contextmanager
    def _located(self) -> Iterator[None]:
        try:
            yield
        except csv.Error as exc:
            raise GscFormatError(
                f"not valid CSV ({exc}; an unclosed quote?)", source=self.source, line=self._next_line
            ) from None
        except UnicodeDecodeError:
            if self._retry_as_cp1252:
                raise _NotUtf8() from None
            what = "text in UTF-8 or cp1252" if self._codec == "cp1252" else f"{self.encoding} text"
            raise GscFormatError(f"not {what}", source=self.source, line=self._undecodable_line()) from None

    def _undecodable_line(self) -> int:
        # The decoder reads ahead in blocks, so the reader's position is not where the bad byte is.
        if isinstance(self._data, bytes):
            try:
                self._data.decode(self._codec)
            except UnicodeDecodeError as exc:
                newline = "\n".encode(self._codec) if self._codec.startswith("utf-16") else b"\n"
                return self._data.count(newline, 0, exc.start) + 1
        return self._next_line

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        width = self.width
        with self._located():
            for fields in self._reader:
                line = self._advance()
                if len(fields) != width:
                    if _blank(fields):
                        continue
                    # Spreadsheets sometimes pad rows with empty cells; anything else is a broken row.
                    if len(fields) < width or any(value.strip() for value in fields[width:]):
                        hint = ""
                        if len(fields) > width:
                            hint = f" (a {DELIMITERS[self.delimiter]} in a query that is not quoted?)"
                        raise GscFormatError(
                            f"has {len(fields)} fields, the header has {width}{hint}", source=self.source, line=line
                        )
                yield line, fields


def _blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _pick_delimiter(header_line: str, wanted: dict[str, tuple[str, ...]], forced: str | None) -> tuple[str, list[str]]:
    """The delimiter under which the header holds the most wanted columns (then the most fields)."""
    best: tuple[tuple[int, int], str, list[str]] | None = None
    for delimiter in [forced] if forced else DELIMITERS:
        fields = next(csv.reader([header_line], delimiter=delimiter), [])
        keys = {_header_key(name) for name in fields}
        score = (sum(1 for spellings in wanted.values() if keys.intersection(spellings)), len(fields))
        if best is None or score > best[0]:
            best = (score, delimiter, fields)
    assert best is not None
    return best[1], best[2]


def _match_header(
    header: list[str],
    table: _Table,
    columns: dict[str, tuple[str, ...]],
    optional: dict[str, tuple[str, ...]],
    line: int,
) -> tuple[dict[str, int], dict[str, str]]:
    """{column: index} and {column: header as written, for messages}; refuses a missing column by name,
    saying how the header was read and what was expected."""
    keys = [_header_key(name) for name in header]
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    for name, spellings in {**optional, **columns}.items():
        for i, key in enumerate(keys):
            if key in spellings:
                index[name] = i
                written[name] = header[i].strip().lstrip("\ufeff")
                break
        else:
            if name in optional:
                continue
            found = ", ".join(repr(h.strip().lstrip("\ufeff")) for h in header)
            delimiter = DELIMITERS.get(table.delimiter, repr(table.delimiter))
            expected = [_EXPECTED.get(column, _DISPLAY[column]) for column in columns]
            hint = ""
            if name != "query" and any(_DISPLAY[name].lower() in key and key != name for key in keys):
                hint = "; this looks like a comparison export: export one date range"
            raise GscFormatError(
                f"missing column {_DISPLAY[name]}: the header, read as {table.encoding} with a {delimiter} "
                f"between columns, holds {len(header)} column{'s' if len(header) != 1 else ''} ({found}); "
                f"expected {', '.join(expected[:-1])} and {expected[-1]}{hint}",
                source=table.source,
                line=line,
            )
    return index, written


def _count(raw: str, source: str, line: int, column: str) -> float:
    """A clicks or impressions cell: a plain number in line, anything else the way that says what is wrong."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < _INF:
        value = _number(raw, source, line, column)
    return value


def _number(raw: str, source: str, line: int, column: str, decimal_comma: bool = False) -> float:
    text = raw.strip()
    if not text:
        raise GscFormatError("is empty", source=source, line=line, column=column)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
        if decimal_comma and text.count(",") == 1 and "." not in text:  # "3,5" in a semicolon or tab file
            with contextlib.suppress(ValueError):
                value = float(text.replace(",", "."))
        if value != value:  # still not a number
            hint = ""
            if "," in text:
                hint = " (thousands separators and decimal commas are not read: export the numbers unformatted)"
            raise GscFormatError(f"{raw!r} is not a number{hint}", source=source, line=line, column=column) from None
    if not math.isfinite(value):
        raise GscFormatError(f"{raw!r} is not a finite number", source=source, line=line, column=column)
    if value < 0:
        raise GscFormatError(f"{raw!r} is negative", source=source, line=line, column=column)
    return value


def _ctr(raw: str, source: str, line: int, column: str, decimal_comma: bool) -> float:
    text = raw.strip()
    if text.endswith("%"):
        value = _number(text[:-1], source, line, column, decimal_comma) / 100
        if value > 1:
            raise GscFormatError(f"{raw!r} is above 100%", source=source, line=line, column=column)
        return value
    value = _number(text, source, line, column, decimal_comma)
    if value > 1:
        raise GscFormatError(
            f"{raw!r} is above 1: give the CTR as a fraction (0.0417) or a percent (4.17%)",
            source=source,
            line=line,
            column=column,
        )
    return value


def _row_inside(raw_query: str, table: _Table) -> tuple[int, str] | None:
    """(line offset, text) of a line inside a multi-line query that reads as a whole record of the file:
    the sign of a quote that was never closed (a query wrapped over lines, as the UI writes long ones, is not)."""
    numeric = [table.index[name] for name in ("clicks", "impressions", "ctr", "position")]
    for offset, inner in enumerate(raw_query.splitlines()[1:], start=1):
        fields = inner.split(table.delimiter)
        if len(fields) != table.width:
            continue
        try:
            for i in numeric:
                float(fields[i].strip().rstrip("%").strip().replace(",", "."))
        except ValueError:
            continue
        return offset, inner
    return None


def _keyword_row(fields: list[str], table: _Table, line: int) -> KeywordRow:
    """One record as a row, every value checked with its line and column (a million rows pay for each step)."""
    source, names = table.source, table.names
    qi, ci, ii, ti, pi = table.positions
    raw_query = fields[qi]
    query = " ".join(raw_query.split())
    if not query:
        raise GscFormatError("the query is empty", source=source, line=line, column=names["query"])
    if "\n" in raw_query or "\r" in raw_query:
        inside = _row_inside(raw_query, table)
        if inside is not None:
            offset, text = inside
            spanned = raw_query.count("\n") + 1
            raise GscFormatError(
                f"the query runs over {spanned} lines and its line {line + offset} reads as a "
                f"row of its own ({text[:80]!r}): the quote that opens it is not closed",
                source=source,
                line=line,
                column=names["query"],
            )
    if len(query) > MAX_QUERY_CHARS:
        raise GscFormatError(
            f"the query is {len(query)} characters long, more than {MAX_QUERY_CHARS}: no search query is that long "
            f"(is {names['query']} the queries' column?)",
            source=source,
            line=line,
            column=names["query"],
        )
    # The common case in line (a plain number, a percent CTR); anything else goes the way that says what is wrong.
    clicks = _count(fields[ci], source, line, names["clicks"])
    impressions = _count(fields[ii], source, line, names["impressions"])
    raw = fields[ti]
    try:
        ctr = float(raw[:-1]) / 100 if raw[-1:] == "%" else float(raw)
    except ValueError:
        ctr = -1.0
    if not 0 <= ctr <= 1:
        ctr = _ctr(raw, source, line, names["ctr"], table.decimal_comma)
    raw = fields[pi]
    try:
        position = float(raw)
    except ValueError:
        position = -1.0
    if not 1 <= position <= MAX_POSITION:
        position = _position(raw, source, line, names["position"], table.decimal_comma)
    try:
        return KeywordRow(query=query, clicks=clicks, impressions=impressions, ctr=ctr, position=position)
    except ValidationError as exc:  # a NUL in the query; the checks above catch the rest
        raise GscFormatError(exc.errors()[0]["msg"], source=source, line=line, column=names["query"]) from None


def _position(raw: str, source: str, line: int, column: str, decimal_comma: bool) -> float:
    position = _number(raw, source, line, column, decimal_comma)
    if position < 1:
        raise GscFormatError(f"{raw!r} is below 1: positions start at 1", source=source, line=line, column=column)
    if position > MAX_POSITION:
        raise GscFormatError(f"{raw!r} is above {MAX_POSITION:g}", source=source, line=line, column=column)
    return position


class _Merger:
    """Collects rows, folding duplicate queries into one (summed counts, impression-weighted position)."""

    def __init__(self) -> None:
        self.rows: list[KeywordRow] = []
        self._index: dict[str, int] = {}
        self._extra: dict[int, list[float]] = {}  # row index -> [clicks, impressions, position*impr, position sum, n]
        self.merged = 0

    def add(self, row: KeywordRow) -> None:
        key = row.query.casefold()
        i = self._index.get(key)
        if i is None:
            self._index[key] = len(self.rows)
            self.rows.append(row)
            return
        self.merged += 1
        acc = self._extra.get(i)
        if acc is None:
            first = self.rows[i]
            acc = self._extra[i] = [
                first.clicks,
                first.impressions,
                first.position * first.impressions,
                first.position,
                1,
            ]
        acc[0] += row.clicks
        acc[1] += row.impressions
        acc[2] += row.position * row.impressions
        acc[3] += row.position
        acc[4] += 1

    def result(self) -> list[KeywordRow]:
        for i, (clicks, impressions, weighted, position_sum, n) in self._extra.items():
            position = weighted / impressions if impressions else position_sum / n
            position = min(MAX_POSITION, max(1.0, position))  # rounding must not step outside the range
            ctr = min(1.0, clicks / impressions) if impressions else 0.0
            self.rows[i] = KeywordRow(
                query=self.rows[i].query, clicks=clicks, impressions=impressions, ctr=ctr, position=position
            )
        return self.rows


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many acyclic rows: it would rescan the growing list
    again and again (a million rows parse in about a third of the time without it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Parsed:
    rows: list[KeywordRow]
    pages: dict[str, list[KeywordRow]] | None  # a file with a page column: rows by page, never summed across
    merged: int
    encoding: str
    delimiter: str


def _parse(
    data: bytes | str,
    source: str,
    columns: dict[str, tuple[str, ...]],
    optional: dict[str, tuple[str, ...]] | None = None,
) -> _Parsed:
    try:
        return _parse_as(data, source, columns, optional, None)
    except _NotUtf8:  # not UTF-8 and no BOM: a Windows "ANSI" save
        return _parse_as(data, source, columns, optional, "cp1252")


def _parse_as(
    data: bytes | str,
    source: str,
    columns: dict[str, tuple[str, ...]],
    optional: dict[str, tuple[str, ...]] | None,
    codec: str | None,
) -> _Parsed:
    table = _Table(data, source, columns, optional, codec)
    page_column = table.index.get("page")
    with _collector_paused():
        if page_column is None:
            merger = _Merger()
            add = merger.add
            for line, fields in table:
                add(_keyword_row(fields, table, line))
            return _Parsed(merger.result(), None, merger.merged, table.encoding, table.delimiter)
        by_page: dict[str, _Merger] = {}
        for line, fields in table:
            page = fields[page_column].strip()
            if not page:
                raise GscFormatError("the page is empty", source=source, line=line, column=table.names["page"])
            pages_merger = by_page.get(page)
            if pages_merger is None:
                pages_merger = by_page[page] = _Merger()
            pages_merger.add(_keyword_row(fields, table, line))
        pages = {page: merger.result() for page, merger in by_page.items()}
        merged = sum(merger.merged for merger in by_page.values())
        return _Parsed([], pages, merged, table.encoding, table.delimiter)


def parse_queries_csv(data: bytes | str, *, source: str = QUERIES_FILE) -> list[KeywordRow]:
    """Rows of the export's Queries.csv (Top queries, Clicks, Impressions, CTR, Position), one page's.

    A header without rows gives []; the caller decides what "no keywords" means (read_export refuses it).
    """
    return _parse(data, source, _QUERY_COLUMNS).rows


def parse_page_query_csv(data: bytes | str, *, source: str = "page-queries.csv") -> dict[str, list[KeywordRow]]:
    """A page-and-query CSV for many pages (a page column under any of PAGE_SPELLINGS), rows grouped by page URL."""
    pages = _parse(data, source, _PAGE_QUERY_COLUMNS).pages
    assert pages is not None  # the page column is required here
    return pages


# --------------------------------------------------------------------------- export ZIP


def _parse_filters(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(date range, page, raw page filter) from Filters.csv's Filter,Value rows.

    Search Console's own filter file has the dimension in the first column and the
    filter in the second ("Page", "+https://example.com/post"). The page is set only when the
    filter names one page: an absolute URL that is exact or "containing" (the UI's
    default when a single page is picked). "+/blog/" covers many pages, so it names none;
    its raw text stays in page_filter.
    """
    date_range = page = page_filter = None
    text = decode_text(data)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(DELIMITERS, key=first.count)
    try:
        for fields in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if len(fields) < 2:
                continue
            name, value = _header_key(fields[0]), fields[1].strip()
            if name == "date" and value and date_range is None:
                date_range = value
            elif name in PAGE_SPELLINGS and value and page_filter is None:
                page_filter = value
                target = value[1:].strip() if value[0] in "+=" else value
                if value[0] not in "-~" and re.match(r"https?://[^/\s]+", target):
                    page = target
    except csv.Error as exc:
        # The filters only label the export; an unreadable Filters.csv does not void the keywords.
        log.warning("Filters.csv could not be read: %s", exc)
    return date_range, page, page_filter


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """A member's bytes, stopping at `budget` whatever the header claims."""
    if info.flag_bits & 0x1:
        raise GscFormatError("is password-protected", source=info.filename)
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as member:
        while chunk := member.read(1 << 20):
            size += len(chunk)
            if size > budget:
                raise GscFormatError(
                    f"unpacks to more than {MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB", source=info.filename
                )
            chunks.append(chunk)
    return b"".join(chunks)


_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    """Why a member could not be extracted safely, or None: an absolute path, a parent step, a drive prefix,
    a NUL, or a link. Any other name is fine (a colon inside it included: "Brief: Oil Tank.svg")."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if not path.parts or "\x00" in name:
        return "an empty or NUL-holding name"
    if path.is_absolute():
        return "an absolute path"
    if ".." in path.parts:
        return "a parent-directory step (..)"
    if _DRIVE.match(path.parts[0]):
        return "a drive prefix"
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def _read_zip(data: bytes, name: str) -> GscExport:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise GscFormatError(f"is not a readable ZIP file ({exc})", source=name) from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise GscFormatError(f"holds {len(infos)} files; a Search Console export holds about 7", source=name)
        for info in infos:
            reason = _unsafe(info)
            if reason:
                raise GscFormatError(f"holds a file with an unsafe path: {info.filename!r} ({reason})", source=name)
        declared = sum(info.file_size for info in infos)
        if declared > MAX_UNCOMPRESSED_BYTES:
            raise GscFormatError(
                f"unpacks to {declared / 1e6:.0f} MB, more than {MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB",
                source=name,
            )

        def named(wanted: str) -> list[zipfile.ZipInfo]:
            return [
                info
                for info in infos
                if PurePosixPath(info.filename.replace("\\", "/")).name.lower() == wanted.lower()
                and not info.filename.startswith("__MACOSX/")
            ]

        # Only Queries.csv and Filters.csv are read; the export's other tables and anything else are left alone.
        queries = named(QUERIES_FILE)
        files = [info.filename for info in infos]
        if not queries:
            held = ", ".join(files) or "nothing"
            raise GscFormatError(
                f"has no {QUERIES_FILE} (it holds: {held}); export the Performance report from Search Console "
                f"and upload its ZIP, or upload {QUERIES_FILE} on its own",
                source=name,
            )
        if len(queries) > 1:
            raise GscFormatError(
                f"holds {len(queries)} files named {QUERIES_FILE}; upload one export at a time", source=name
            )
        budget = MAX_UNCOMPRESSED_BYTES
        queries_data = _read_member(archive, queries[0], budget)
        budget -= len(queries_data)
        source = f"{name}: {queries[0].filename}"
        parsed = _parse(queries_data, source, _QUERY_COLUMNS, {"page": PAGE_SPELLINGS})
        date_range = page = page_filter = None
        filters = named(FILTERS_FILE)
        if filters:
            date_range, page, page_filter = _parse_filters(_read_member(archive, filters[0], budget))
    return _export(
        parsed,
        source,
        name=name,
        files=files,
        date_range=date_range,
        page=page,
        page_filter=page_filter,
        has_filters_file=bool(filters),
    )


def read_export(path_or_bytes: str | Path | bytes, filename: str | None = None) -> GscExport:
    """A Search Console Performance export: the UI's ZIP, its Queries.csv alone, or a page-and-query file.

    ZIPs are recognised by their signature, not their name. Nothing is extracted
    to disk; sizes are capped at MAX_UNCOMPRESSED_BYTES. An export without rows is refused.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        name = filename or ("export.zip" if data[:2] == b"PK" else QUERIES_FILE)
    else:
        path = Path(path_or_bytes)
        name = filename or path.name
        if path.stat().st_size > MAX_UNCOMPRESSED_BYTES:
            raise GscFormatError(f"is larger than {MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB", source=name)
        data = path.read_bytes()
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return _read_zip(data, name)
    if len(data) > MAX_UNCOMPRESSED_BYTES:
        raise GscFormatError(f"is larger than {MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB", source=name)
    parsed = _parse(data, name, _QUERY_COLUMNS, {"page": PAGE_SPELLINGS})
    return _export(parsed, name, name=name, files=[name], date_range=None, page=None)


def _export(parsed: _Parsed, source: str, *, name: str, files: list[str], **found: Any) -> GscExport:
    """The export of a parsed file (`source` in messages, `name` the upload's), refused when it holds no row;
    `found` is what its ZIP's Filters.csv says (date range, page filter)."""
    if not (parsed.rows or parsed.pages):
        raise GscFormatError(NO_ROWS, source=source)
    return GscExport(
        rows=parsed.rows,
        files=files,
        duplicates_merged=parsed.merged,
        pages=parsed.pages,
        encoding=parsed.encoding,
        delimiter=parsed.delimiter,
        source=name,
        **found,
    )


def is_page_query_file(data: bytes | str) -> bool:
    """Whether a file's header, in any encoding and delimiter the reader detects, names a page and a query column."""
    if isinstance(data, str):
        text = data[:65536]
    else:
        head = data[:65536]
        codec, bom, _ = _sniff_encoding(head)
        text = head[bom:].decode(codec, errors="replace")
    lines = (line for line in text.splitlines() if line.strip())
    first = next((line for line in lines if not line.strip().lower().startswith("sep=")), "")
    _, fields = _pick_delimiter(first, _PAGE_QUERY_COLUMNS, None)
    keys = {_header_key(name) for name in fields}
    return bool(keys.intersection(PAGE_SPELLINGS)) and bool(keys.intersection(_QUERY_COLUMNS["query"]))


def _url_key(url: str) -> str:
    try:
        return normalize_url(url.strip())
    except GuardError:
        return url.strip()


def pages_for_import(
    export: GscExport, page: str | None = None, *, site_wide: bool = False
) -> dict[str, list[KeywordRow]]:
    """The export's rows by the page they are for; GscFormatError says why they cannot be attributed.

    A page-and-query file gives every page, or with `page` that page's rows alone (never another page's
    added to them). A one-page export goes to `page`, else to the page its Filters.csv names; a site-wide
    export (a Filters.csv without a one-page filter) is refused unless `site_wide` says the user means it.
    """
    if export.pages is not None:
        if page is None:
            return export.pages
        wanted = _url_key(page)
        for url, rows in export.pages.items():
            if _url_key(url) == wanted:
                return {url: rows}
        listed = ", ".join(list(export.pages)[:10])
        more = f" and {len(export.pages) - 10} more" if len(export.pages) > 10 else ""
        raise GscFormatError(
            f"has no rows for {page}; the {len(export.pages)} page{'s' if len(export.pages) != 1 else ''} it holds: "
            f"{listed}{more}. Name one of them (--page URL, or the page field of the upload), or none to import "
            "every page",
            source=export.source,
        )
    if export.has_filters_file and export.page is None and not site_wide:
        if export.page_filter:
            what = (
                f"is filtered to the pages matching {export.page_filter!r}, many pages rather than one, so its "
                "queries are not one page's"
            )
        else:
            what = (
                f"is a site-wide export: its {FILTERS_FILE} sets no page, so its queries are the whole "
                "property's, not one page's"
            )
        raise GscFormatError(
            f"{what}; {HOW_TO_EXPORT_ONE_PAGE}. {SITE_WIDE_FLAG[0].upper()}{SITE_WIDE_FLAG[1:]}", source=export.source
        )
    target = page or export.page
    if not target:
        raise GscFormatError(
            "does not say which page its rows are for: name it (--page URL, or the page field of the upload)",
            source=export.source,
        )
    return {target: export.rows}


# --------------------------------------------------------------------------- filters


def _brand_matcher(terms: list[str]):
    """Short terms ("bsd") must stand as words; longer ones match anywhere, spaces optional."""
    words = [t.casefold().strip() for t in terms if t.strip()]
    short = [re.escape(t) for t in words if len(t) <= 3]
    short_re = re.compile(r"\b(?:" + "|".join(short) + r")\b") if short else None
    long_terms = [t for t in words if len(t) > 3]
    long_squashed = [t.replace(" ", "") for t in long_terms]

    def is_brand(query: str) -> bool:
        text = query.casefold()
        if short_re is not None and short_re.search(text):
            return True
        squashed = text.replace(" ", "")
        return any(t in text for t in long_terms) or any(t in squashed for t in long_squashed)

    return is_brand


def apply_filters(rows: list[KeywordRow], filters: KeywordFilters) -> list[KeywordRow]:
    """Rows that pass the position, impressions, clicks and brand filters, sorted, capped at max_keywords."""
    is_brand = _brand_matcher(filters.brand_terms) if filters.brand_terms else None

    def keep(row: KeywordRow) -> bool:
        if filters.min_position is not None and row.position < filters.min_position:
            return False
        if filters.max_position is not None and row.position > filters.max_position:
            return False
        if filters.min_impressions is not None and row.impressions < filters.min_impressions:
            return False
        if filters.min_clicks is not None and row.clicks < filters.min_clicks:
            return False
        return not (is_brand and is_brand(row.query))

    kept = [row for row in rows if keep(row)]
    # Ties are broken by the other measures, then the query, so the order is stable across runs.
    if filters.sort_by == "clicks":
        kept.sort(key=lambda r: (-r.clicks, -r.impressions, r.position, r.query))
    elif filters.sort_by == "position":
        kept.sort(key=lambda r: (r.position, -r.impressions, r.query))
    else:
        kept.sort(key=lambda r: (-r.impressions, -r.clicks, r.position, r.query))
    if filters.max_keywords is not None:
        kept = kept[: filters.max_keywords]
    return kept


# --------------------------------------------------------------------------- Search Analytics API

SCOPE = "https://www.googleapis.com/auth/webmasters.readonly"
DEFAULT_BASE_URL = "https://searchconsole.googleapis.com/webmasters/v3"
_TOKEN_MARGIN_SECONDS = 120
_MAX_ROWS = 5_000_000  # stops a server that never returns an empty page


class SearchConsoleError(RuntimeError):
    """The API or its token endpoint refused, or kept failing after the retries."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class SearchAnalyticsClient:
    """Reads page-and-query rows from the Search Analytics API with a service account."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        credentials: dict[str, Any],
        token_url: str | None = None,
        http: httpx.AsyncClient | None = None,
        max_tries: int = 6,
        row_limit: int = 25_000,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ):
        missing = [key for key in ("client_email", "private_key") if not credentials.get(key)]
        if not (token_url or credentials.get("token_uri")):
            missing.append("token_uri")
        if missing:
            raise ValueError(f"service-account credentials lack {', '.join(missing)}")
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url or credentials["token_uri"]
        self._client_email = credentials["client_email"]
        self._private_key = credentials["private_key"]
        self._key_id = credentials.get("private_key_id")
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(60.0))
        self._owns_http = http is None
        self.max_tries = max(1, max_tries)
        self.row_limit = row_limit
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.requests = 0
        self.skipped_rows = 0

    def __repr__(self) -> str:  # keeps the key out of logs and tracebacks
        return f"SearchAnalyticsClient(base_url={self.base_url!r}, client_email={self._client_email!r})"

    async def __aenter__(self) -> SearchAnalyticsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _access_token(self) -> str:
        async with self._token_lock:
            if self._token and time.monotonic() < self._token_expires:
                return self._token
            now = int(time.time())
            claims = {"iss": self._client_email, "scope": SCOPE, "aud": self.token_url, "iat": now, "exp": now + 3600}
            headers = {"kid": self._key_id} if self._key_id else None
            assertion = jwt.encode(claims, self._private_key, algorithm="RS256", headers=headers)
            response = await self._send(
                "POST",
                self.token_url,
                data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            )
            body = response.json()
            token = body.get("access_token")
            if not token:
                raise SearchConsoleError("the token endpoint answered without an access_token")
            lifetime = float(body.get("expires_in", 3600))
            self._token = token
            self._token_expires = time.monotonic() + max(0.0, lifetime - _TOKEN_MARGIN_SECONDS)
            return token

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        seconds = retry_after_seconds(response.headers.get("Retry-After")) if response is not None else None
        if seconds is not None:
            return min(self.backoff_max, seconds)
        # Full jitter: spreads the retries of many workers hitting the same quota.
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with retries on 429, 5xx and connection failures; raises on other errors."""
        response: httpx.Response | None = None
        for attempt in range(self.max_tries):
            self.requests += 1
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 == self.max_tries:
                    raise SearchConsoleError(f"{url} could not be reached: {type(exc).__name__}") from None
                response = None
                log.warning("Search Console request failed (%s); retrying", type(exc).__name__)
            else:
                if response.status_code < 400:
                    return response
                if response.status_code != 429 and response.status_code < 500:
                    raise SearchConsoleError(_error_text(response), status=response.status_code)
                if attempt + 1 == self.max_tries:
                    break
                log.warning("Search Console answered %s; retrying", response.status_code)
            await asyncio.sleep(self._delay(attempt, response))
        assert response is not None
        raise SearchConsoleError(f"{_error_text(response)} (after {self.max_tries} tries)", status=response.status_code)

    async def _post_api(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        for renewed in (False, True):
            token = await self._access_token()
            try:
                response = await self._send("POST", url, json=body, headers={"Authorization": f"Bearer {token}"})
            except SearchConsoleError as exc:
                if exc.status == 401 and not renewed:
                    self._token = None  # revoked or expired early: fetch a new one once
                    continue
                raise
            return response.json()
        raise AssertionError("unreachable")

    async def query(
        self, site_url: str, start_date: str, end_date: str, *, page: str | None = None
    ) -> dict[str, list[KeywordRow]]:
        """Every (page, query) row for the dates, grouped by page URL; paged by startRow until empty."""
        url = f"{self.base_url}/sites/{quote(site_url, safe='')}/searchAnalytics/query"
        body: dict[str, Any] = {
            "startDate": start_date,
            "endDate": end_date,
            "dimensions": ["page", "query"],
            "rowLimit": self.row_limit,
        }
        if page:
            body["dimensionFilterGroups"] = [
                {"filters": [{"dimension": "page", "operator": "equals", "expression": page}]}
            ]
        pages: dict[str, list[KeywordRow]] = {}
        start_row = 0
        while start_row < _MAX_ROWS:
            answer = await self._post_api(url, {**body, "startRow": start_row})
            rows = answer.get("rows") or []
            if not rows:
                break
            for raw in rows:
                parsed = _api_row(raw)
                if parsed is None:
                    self.skipped_rows += 1
                    continue
                pages.setdefault(parsed[0], []).append(parsed[1])
            start_row += len(rows)
        if self.skipped_rows:
            log.warning("skipped %d Search Analytics rows that were not valid keyword rows", self.skipped_rows)
        return pages


def _api_row(raw: dict[str, Any]) -> tuple[str, KeywordRow] | None:
    keys = raw.get("keys") or []
    if len(keys) < 2:
        return None
    try:
        row = KeywordRow(
            query=keys[1],
            clicks=raw.get("clicks", 0),
            impressions=raw.get("impressions", 0),
            ctr=min(1.0, max(0.0, float(raw.get("ctr", 0)))),
            position=raw.get("position", 1),
        )
    except (ValidationError, TypeError, ValueError):
        return None
    return keys[0], row


def _error_text(response: httpx.Response) -> str:
    """The API's own message (never the request, which carries the token or the assertion)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"HTTP {response.status_code}: {error.get('message') or error.get('status') or ''}".rstrip(": ")
    if isinstance(error, str):  # the token endpoint's OAuth shape
        description = body.get("error_description")
        return f"HTTP {response.status_code}: {error}" + (f" ({description})" if description else "")
    return f"HTTP {response.status_code}"
