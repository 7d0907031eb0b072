"""Search Console keyword data: the UI's Performance export, page-and-query CSVs and the Search Analytics API.

File imports are all or nothing: a parse either returns every row or raises
GscFormatError naming the file, the line and the column, so a half-read file
never reaches an analysis.

Duplicate queries inside one file (the same text after whitespace and case
folding) are merged: clicks and impressions are summed, the position is
weighted by impressions and the CTR is recomputed. `GscExport.duplicates_merged`
says how many rows were folded in that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import logging
import math
import random
import re
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from pydantic import ValidationError

from pageperfect.models import KeywordFilters, KeywordRow
from pageperfect.sources.retry_after import retry_after_seconds

log = logging.getLogger(__name__)

MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_ZIP_MEMBERS = 200
MAX_QUERY_CHARS = 1000  # KeywordRow.query's limit
MAX_POSITION = 1000.0  # KeywordRow.position's limit

QUERIES_FILE = "Queries.csv"
FILTERS_FILE = "Filters.csv"

# Canonical column -> header spellings accepted (compared after _header_key).
_QUERY_COLUMNS: dict[str, tuple[str, ...]] = {
    "query": ("top queries", "top query", "queries", "query"),
    "clicks": ("clicks",),
    "impressions": ("impressions",),
    "ctr": ("ctr", "click through rate"),
    "position": ("position", "average position", "avg position"),
}
_PAGE_QUERY_COLUMNS: dict[str, tuple[str, ...]] = {
    "page": ("page", "url", "top pages", "landing page"),
    **_QUERY_COLUMNS,
}
# How a missing column is named in messages.
_DISPLAY = {
    "page": "page",
    "query": "Top queries",
    "clicks": "Clicks",
    "impressions": "Impressions",
    "ctr": "CTR",
    "position": "Position",
}


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
    """What a Performance export holds for the analysis."""

    rows: list[KeywordRow]
    date_range: str | None
    page: str | None
    files: list[str]
    duplicates_merged: int = 0
    page_filter: str | None = None  # Filters.csv's Page value as written, operator included ("+/blog/")


# --------------------------------------------------------------------------- CSV


def _header_key(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").replace("_", " ").replace("-", " ").lower().split())


def _encoding(data: bytes | str) -> str:
    if isinstance(data, bytes) and data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"  # spreadsheet "Unicode text" saves
    return "utf-8-sig"


def _text_lines(data: bytes | str) -> Iterable[str]:
    """Lines for csv.reader, decoded lazily so a large upload is not held twice."""
    if isinstance(data, str):
        return io.StringIO(data.removeprefix("\ufeff"), newline="")
    return io.TextIOWrapper(io.BytesIO(data), encoding=_encoding(data), newline="")


class _Table:
    """A CSV file's header, matched to the wanted columns, and its records.

    The header is matched case- and whitespace-insensitively; extra columns are
    ignored. Iterating yields (line where the record starts, fields).
    """

    def __init__(self, data: bytes | str, source: str, columns: dict[str, tuple[str, ...]]):
        self.source = source
        self._data = data
        self._encoding = _encoding(data)
        self._reader = csv.reader(_text_lines(data), strict=True)
        self._next_line = 1
        header: list[str] | None = None
        with self._located():
            for fields in self._reader:
                line = self._advance()
                if _blank(fields):
                    continue
                header = fields
                break
        if header is None:
            raise GscFormatError("is empty", source=source)
        self.width = len(header)
        self.index, self.names = _match_header(header, source, columns, line)

    def _advance(self) -> int:
        line, self._next_line = self._next_line, self._reader.line_num + 1
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
            raise GscFormatError("not UTF-8 text", source=self.source, line=self._undecodable_line()) from None

    def _undecodable_line(self) -> int:
        # The decoder reads ahead in blocks, so the reader's position is not where the bad byte is.
        if isinstance(self._data, bytes):
            try:
                self._data.decode(self._encoding)
            except UnicodeDecodeError as exc:
                return self._data.count(b"\n", 0, exc.start) + 1
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
                        hint = " (a comma in a query that is not quoted?)" if len(fields) > width else ""
                        raise GscFormatError(
                            f"has {len(fields)} fields, the header has {width}{hint}", source=self.source, line=line
                        )
                yield line, fields


def _blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _match_header(
    header: list[str], source: str, columns: dict[str, tuple[str, ...]], line: int
) -> tuple[dict[str, int], dict[str, str]]:
    """{column: index} and {column: header as written, for messages}; refuses a missing column by name."""
    keys = [_header_key(name) for name in header]
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    for name, spellings in columns.items():
        for i, key in enumerate(keys):
            if key in spellings:
                index[name] = i
                written[name] = header[i].strip().lstrip("\ufeff")
                break
        else:
            found = ", ".join(h.strip() for h in header)
            hint = ""
            if name != "query" and any(_DISPLAY[name].lower() in key and key != name for key in keys):
                hint = "; this looks like a comparison export: export one date range"
            raise GscFormatError(
                f"missing column {_DISPLAY[name]} (the header is: {found}){hint}", source=source, line=line
            )
    return index, written


def _number(raw: str, source: str, line: int, column: str) -> float:
    text = raw.strip()
    if not text:
        raise GscFormatError("is empty", source=source, line=line, column=column)
    try:
        value = float(text)
    except ValueError:
        hint = ""
        if "," in text:
            hint = " (thousands separators and decimal commas are not read: export the numbers unformatted)"
        raise GscFormatError(f"{raw!r} is not a number{hint}", source=source, line=line, column=column) from None
    if not math.isfinite(value):
        raise GscFormatError(f"{raw!r} is not a finite number", source=source, line=line, column=column)
    if value < 0:
        raise GscFormatError(f"{raw!r} is negative", source=source, line=line, column=column)
    return value


def _ctr(raw: str, source: str, line: int, column: str) -> float:
    text = raw.strip()
    if text.endswith("%"):
        value = _number(text[:-1], source, line, column) / 100
        if value > 1:
            raise GscFormatError(f"{raw!r} is above 100%", source=source, line=line, column=column)
        return value
    value = _number(text, source, line, column)
    if value > 1:
        raise GscFormatError(
            f"{raw!r} is above 1: give the CTR as a fraction (0.0417) or a percent (4.17%)",
            source=source,
            line=line,
            column=column,
        )
    return value


def _keyword_row(fields: list[str], table: _Table, line: int) -> KeywordRow:
    index, names, source = table.index, table.names, table.source
    raw_query = fields[index["query"]]
    query = " ".join(raw_query.split())
    if not query:
        raise GscFormatError("the query is empty", source=source, line=line, column=names["query"])
    if len(query) > MAX_QUERY_CHARS:
        hint = " (an unclosed quote?)" if "\n" in raw_query else ""
        raise GscFormatError(
            f"the query is {len(query)} characters long, more than {MAX_QUERY_CHARS}{hint}",
            source=source,
            line=line,
            column=names["query"],
        )
    clicks = _number(fields[index["clicks"]], source, line, names["clicks"])
    impressions = _number(fields[index["impressions"]], source, line, names["impressions"])
    ctr = _ctr(fields[index["ctr"]], source, line, names["ctr"])
    raw_position = fields[index["position"]]
    position = _number(raw_position, source, line, names["position"])
    if position < 1:
        raise GscFormatError(
            f"{raw_position!r} is below 1: positions start at 1", source=source, line=line, column=names["position"]
        )
    if position > MAX_POSITION:
        raise GscFormatError(
            f"{raw_position!r} is above {MAX_POSITION:g}", source=source, line=line, column=names["position"]
        )
    try:
        return KeywordRow(query=query, clicks=clicks, impressions=impressions, ctr=ctr, position=position)
    except ValidationError as exc:  # the checks above should have caught it; say where anyway
        raise GscFormatError(exc.errors()[0]["msg"], source=source, line=line) from None


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
            acc = self._extra[i] = [first.clicks, first.impressions, first.position * first.impressions, first.position, 1]
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


def _parse_queries(data: bytes | str, source: str) -> tuple[list[KeywordRow], int]:
    table = _Table(data, source, _QUERY_COLUMNS)
    merger = _Merger()
    with _collector_paused():
        for line, fields in table:
            merger.add(_keyword_row(fields, table, line))
        return merger.result(), merger.merged


def parse_queries_csv(data: bytes | str, *, source: str = QUERIES_FILE) -> list[KeywordRow]:
    """Rows of the export's Queries.csv (Top queries, Clicks, Impressions, CTR, Position).

    A header without rows gives []; the caller decides what "no keywords" means.
    """
    return _parse_queries(data, source)[0]


def parse_page_query_csv(data: bytes | str, *, source: str = "page-queries.csv") -> dict[str, list[KeywordRow]]:
    """A page,query,clicks,impressions,ctr,position CSV for many pages, rows grouped by page URL."""
    table = _Table(data, source, _PAGE_QUERY_COLUMNS)
    pages: dict[str, _Merger] = {}
    page_column = table.index["page"]
    with _collector_paused():
        for line, fields in table:
            page = fields[page_column].strip()
            if not page:
                raise GscFormatError("the page is empty", source=source, line=line, column=table.names["page"])
            pages.setdefault(page, _Merger()).add(_keyword_row(fields, table, line))
    return {page: merger.result() for page, merger in pages.items()}


# --------------------------------------------------------------------------- export ZIP


def _parse_filters(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(date range, page, raw page filter) from Filters.csv's Filter,Value rows.

    The UI writes a page filter as an operator and a value: "+/blog/" (URLs containing),
    "-/blog/" (not containing), "=https://..." (exact URL). `page` is set only when the
    filter names one page: an absolute URL that is exact or "containing" (the UI's
    default when a single page is picked). "+/blog/" covers many pages, so it names none;
    its raw text stays in page_filter.
    """
    date_range = page = page_filter = None
    try:
        for fields in csv.reader(_text_lines(data)):
            if len(fields) < 2:
                continue
            name, value = _header_key(fields[0]), fields[1].strip()
            if name == "date" and value and date_range is None:
                date_range = value
            elif name in ("page", "url") and value and page_filter is None:
                page_filter = value
                target = value[1:].strip() if value[0] in "+=" else value
                if value[0] not in "-~" and re.match(r"https?://[^/\s]+", target):
                    page = target
    except (csv.Error, UnicodeDecodeError) as exc:
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


def _unsafe(name: str) -> bool:
    """Absolute, drive-letter or parent-relative member names: never legitimate in an export."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not path.parts:
        return True
    return path.is_absolute() or ".." in path.parts or ":" in path.parts[0]


def _read_zip(data: bytes, name: str) -> GscExport:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise GscFormatError(f"is not a readable ZIP file ({exc})", source=name) from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise GscFormatError(f"holds {len(infos)} files; a Search Console export holds about 7", source=name)
        unsafe = [info.filename for info in infos if _unsafe(info.filename)]
        if unsafe:
            raise GscFormatError(f"holds a file with an unsafe path: {unsafe[0]!r}", source=name)
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
        rows, merged = _parse_queries(queries_data, f"{name}: {queries[0].filename}")
        date_range = page = page_filter = None
        filters = named(FILTERS_FILE)
        if filters:
            date_range, page, page_filter = _parse_filters(_read_member(archive, filters[0], budget))
    return GscExport(
        rows=rows, date_range=date_range, page=page, files=files, duplicates_merged=merged, page_filter=page_filter
    )


def read_export(path_or_bytes: str | Path | bytes, filename: str | None = None) -> GscExport:
    """A Search Console Performance export: the UI's ZIP, or its Queries.csv alone.

    ZIPs are recognised by their signature, not their name. Nothing is extracted
    to disk; sizes are capped at MAX_UNCOMPRESSED_BYTES.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        name = filename or ("export.zip" if data[:2] == b"PK" else QUERIES_FILE)
    else:
        path = Path(path_or_bytes)
        name = filename or path.name
        if path.stat().st_size > MAX_UNCOMPRESSED_BYTES:
            raise GscFormatError(
                f"is larger than {MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB", source=name
            )
        data = path.read_bytes()
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return _read_zip(data, name)
    if len(data) > MAX_UNCOMPRESSED_BYTES:
        raise GscFormatError(f"is larger than {MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MB", source=name)
    rows, merged = _parse_queries(data, name)
    return GscExport(rows=rows, date_range=None, page=None, files=[name], duplicates_merged=merged)


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
        raise SearchConsoleError(
            f"{_error_text(response)} (after {self.max_tries} tries)", status=response.status_code
        )

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
