"""Search Console imports: the export's CSVs and ZIP, page-and-query CSVs, filters, and the API client."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pageperfect.sources import gsc
from pageperfect.sources.gsc import (
    GscFormatError,
    SearchAnalyticsClient,
    SearchConsoleError,
    apply_filters,
    parse_page_query_csv,
    parse_queries_csv,
    read_export,
)
from pageperfect.models import KeywordFilters, KeywordRow
from tests.helpers.data import make_zip
from tests.helpers.http import send_json

HEADER = "Top queries,Clicks,Impressions,CTR,Position\n"
REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"


def refused(data: bytes | str, **kwargs) -> str:
    with pytest.raises(GscFormatError) as caught:
        parse_queries_csv(data, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------- Queries.csv


def test_reads_rows_with_percent_ctr_and_decimal_positions():
    rows = parse_queries_csv(HEADER + "shed base,344,5317,6.47%,2.64\nshed roof,0,120,0%,11\nlog cabin,5,5,100%,1\n")
    assert [r.query for r in rows] == ["shed base", "shed roof", "log cabin"]
    assert rows[0].clicks == 344 and rows[0].impressions == 5317
    assert rows[0].ctr == pytest.approx(0.0647)
    assert rows[0].position == pytest.approx(2.64)
    assert rows[1].ctr == 0 and rows[1].position == 11
    assert rows[2].ctr == pytest.approx(1.0)


def test_standard_csv_quoting_commas_doubled_quotes_and_line_breaks():
    data = (
        HEADER
        + '"modern long, narrow garden ideas",21,431,4.87%,3.85\n'
        + '"the ""best"" shed",1,10,10%,4\n'
        + '"shed\nwith a\r\nporch",2,20,10%,5\n'
        + "after the break,3,30,10%,6\n"
    )
    rows = parse_queries_csv(data)
    assert [r.query for r in rows] == [
        "modern long, narrow garden ideas",
        'the "best" shed',
        "shed with a porch",  # whitespace, line breaks included, collapses to single spaces
        "after the break",
    ]
    assert rows[3].position == 6


def test_line_numbers_count_physical_lines_after_a_multiline_query():
    data = HEADER + '"two\nlines",1,10,10%,4\nbad row,x,10,10%,4\n'
    assert refused(data) == "Queries.csv line 4, column Clicks: 'x' is not a number"


def test_no_final_newline_keeps_the_last_row():
    rows = parse_queries_csv(HEADER + "first,1,10,10%,2\nlast,2,20,10%,3")
    assert [r.query for r in rows] == ["first", "last"]


def test_bom_and_header_spelling_variants():
    data = "\ufeff top QUERIES ,clicks, Impressions ,ctr,POSITION\r\nshed,1,10,10%,2\r\n"
    for payload in (data, data.encode("utf-8"), data.encode("utf-16")):
        rows = parse_queries_csv(payload)
        assert [(r.query, r.clicks, r.position) for r in rows] == [("shed", 1, 2)]


def test_extra_columns_and_column_order_do_not_matter():
    data = "Position,Top queries,Notes,CTR,Impressions,Clicks\n3.5,shed,whatever,2%,100,2\n"
    (row,) = parse_queries_csv(data)
    assert (row.query, row.clicks, row.impressions, row.ctr, row.position) == ("shed", 2, 100, 0.02, 3.5)


def test_missing_column_is_named():
    message = refused("Top queries,Clicks,CTR,Position\nshed,1,10%,2\n")
    assert "missing column Impressions" in message
    assert message.startswith("Queries.csv line 1:")


def test_a_comparison_export_is_recognised():
    header = "Top queries,Last 3 months Clicks,Previous 3 months Clicks,Last 3 months Impressions\n"
    assert "comparison export" in refused(header + "shed,1,2,3\n")


def test_non_numeric_values_are_refused_with_line_and_column():
    data = HEADER + "ok,1,10,10%,2\nshed,1,lots,10%,2\n"
    assert refused(data) == "Queries.csv line 3, column Impressions: 'lots' is not a number"


def test_thousands_separators_are_refused_with_a_hint():
    data = HEADER + 'shed,12,"1,234",1%,3\n'
    message = refused(data, source="export.csv")
    assert message.startswith("export.csv line 2, column Impressions: '1,234' is not a number")
    assert "thousands separators" in message


@pytest.mark.parametrize("data", [b"", "", "\n\n", b"\xef\xbb\xbf", b"  \r\n"])
def test_empty_file_is_refused(data):
    assert refused(data) == "Queries.csv is empty"


def test_header_only_gives_no_rows():
    assert parse_queries_csv(HEADER) == []
    assert parse_queries_csv(HEADER.rstrip("\n")) == []


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("shed,-1,10,10%,2", "Clicks", "'-1' is negative"),
        ("shed,1,10,10%,-2", "Position", "'-2' is negative"),
        ("shed,1,NaN,10%,2", "Impressions", "'NaN' is not a finite number"),
        ("shed,inf,10,10%,2", "Clicks", "'inf' is not a finite number"),
        ("shed,1,10,10%,nan", "Position", "'nan' is not a finite number"),
        ("shed,1,10,10%,0", "Position", "'0' is below 1: positions start at 1"),
        ("shed,1,10,10%,0.5", "Position", "'0.5' is below 1: positions start at 1"),
        ("shed,1,10,10%,1001", "Position", "'1001' is above 1000"),
        ("shed,1,10,101%,2", "CTR", "'101%' is above 100%"),
        ("shed,1,10,4.17,2", "CTR", "'4.17' is above 1"),
        ("shed,,10,10%,2", "Clicks", "is empty"),
    ],
)
def test_out_of_range_values_are_refused(row, column, reason):
    message = refused(HEADER + "fine,1,10,10%,2\n" + row + "\n")
    assert message.startswith(f"Queries.csv line 3, column {column}: {reason}")


def test_ctr_may_be_a_fraction():
    (row,) = parse_queries_csv(HEADER + "shed,1,25,0.04,2\n")
    assert row.ctr == pytest.approx(0.04)


def test_empty_query_is_refused_with_its_line():
    assert (
        refused(HEADER + "ok,1,10,10%,2\n   ,1,10,10%,2\n")
        == "Queries.csv line 3, column Top queries: the query is empty"
    )


def test_a_long_quoted_query_over_several_lines_is_kept_whole():
    # Search Console records prompts typed into assistants; the UI wraps them over lines, correctly quoted.
    prompt = ("i'm in my mid-50s with a modest income and a small garden " * 22).strip()
    assert len(prompt) > 1231
    words = prompt.split()
    wrapped = " ".join(words[:40]) + "\n" + " ".join(words[40:120]) + "\r\n" + " ".join(words[120:])
    rows = parse_queries_csv(f'{HEADER}ok,1,10,10%,2\n"{wrapped}",3,40,7.5%,2.1\nafter,1,10,10%,2\n')
    assert [r.query for r in rows] == ["ok", " ".join(wrapped.split()), "after"]
    assert len(rows[1].query) == len(" ".join(prompt.split()))
    assert rows[1].clicks == 3 and rows[1].position == pytest.approx(2.1)


def test_a_query_beyond_the_guard_is_refused_without_blaming_a_quote():
    exactly = "q" * gsc.MAX_QUERY_CHARS
    (row,) = parse_queries_csv(f"{HEADER}{exactly},1,10,10%,2\n")
    assert row.query == exactly
    too_long = "x" * (gsc.MAX_QUERY_CHARS + 1)
    message = refused(f'{HEADER}ok,1,10,10%,2\n"{too_long[:9000]}\n{too_long[9001:]}",1,10,10%,2\n')
    assert message == (
        f"Queries.csv line 3, column Top queries: the query is {gsc.MAX_QUERY_CHARS + 1} characters long, more "
        f"than {gsc.MAX_QUERY_CHARS}: no search query is that long (is Top queries the queries' column?)"
    )
    assert "quote" not in message


def test_a_query_swallowing_rows_blames_the_quote_that_opens_it():
    # The quote opened on line 3 closes only at a stray one on line 5: strict CSV reads it as one field.
    data = HEADER + 'ok,1,10,10%,2\n"never closed,1,10,10%,2\nmore,3,30,1%,4\n",1,10,10%,2\n'
    message = refused(data)
    assert message.startswith(
        "Queries.csv line 3, column Top queries: the query runs over 3 lines and its line 4 "
        "reads as a row of its own ('more,3,30,1%,4')"
    )
    assert message.endswith("the quote that opens it is not closed")


def test_unclosed_quote_is_refused_with_the_line_it_started_on():
    data = HEADER + "ok,1,10,10%,2\n" + '"never closed,1,10,10%,2\n' + "more,1,10,10%,2\n"
    message = refused(data)
    assert message.startswith("Queries.csv line 3")
    assert "unclosed quote" in message


def test_wrong_field_count_is_refused_but_trailing_empty_cells_are_padding():
    assert refused(HEADER + "shed,1,10,10%\n") == "Queries.csv line 2: has 4 fields, the header has 5"
    assert "not quoted" in refused(HEADER + "shed, large,1,10,10%,2\n")
    (row,) = parse_queries_csv(HEADER + "shed,1,10,10%,2,,\n")
    assert row.query == "shed"


def test_blank_lines_are_skipped():
    rows = parse_queries_csv("\n" + HEADER + "\na,1,10,10%,2\n\n\nb,1,10,10%,2\n\n")
    assert [r.query for r in rows] == ["a", "b"]


def test_text_that_is_not_utf8_is_read_as_cp1252_and_undecodable_bytes_are_refused():
    data = (HEADER + "ok,1,10,10%,2\n" * 5000).encode() + b"caf\xe9 cr\xe8me,1,10,10%,2\n"
    rows = parse_queries_csv(data)
    assert rows[-1].query == "café crème"
    broken = (HEADER + "ok,1,10,10%,2\n" * 5000).encode() + b"caf\x81,1,10,10%,2\n"  # 0x81: not in cp1252
    assert refused(broken) == "Queries.csv line 5002: not text in UTF-8 or cp1252"


def test_nothing_is_half_imported():
    # A bad last row voids the whole file: the caller never sees the 999 good rows.
    good = "".join(f"query {i},1,10,10%,2\n" for i in range(999))
    with pytest.raises(GscFormatError, match="line 1001"):
        parse_queries_csv(HEADER + good + "last,1,10,10%,zero\n")


def test_duplicate_queries_are_merged_with_weighted_position():
    data = HEADER + "shed base,10,100,10%,2\nShed  Base,30,300,10%,6\nother,1,10,10%,1\n"
    rows = parse_queries_csv(data)
    assert [r.query for r in rows] == ["shed base", "other"]
    merged = rows[0]
    assert merged.clicks == 40 and merged.impressions == 400
    assert merged.position == pytest.approx((2 * 100 + 6 * 300) / 400)
    assert merged.ctr == pytest.approx(0.1)
    export = read_export((HEADER + "a,0,0,0%,2\na,0,0,0%,4\nb,1,1,100%,1\nb,0,3,0%,1\n").encode())
    assert export.duplicates_merged == 2
    assert export.rows[0].position == pytest.approx(3.0)  # no impressions to weigh by: plain mean
    assert export.rows[0].ctr == 0
    assert export.rows[1].ctr == pytest.approx(0.25)


@pytest.mark.slow  # its point is the size: a 200,000-row export
def test_a_large_file_is_read_whole():  # its speed is measured in bench/gsc_import.py, not asserted here
    count = 200_000
    lines = [HEADER]
    lines.extend(
        f"query {i} about garden sheds,{i % 37},{i % 5000 + 40},{i % 37}%,{1 + (i % 900) / 10}\n" for i in range(count)
    )
    data = "".join(lines).encode()
    rows = parse_queries_csv(data)
    assert len(rows) == count
    assert rows[123_456].query == "query 123456 about garden sheds"
    assert rows[123_456].impressions == 123_456 % 5000 + 40
    assert rows[123_456].ctr == pytest.approx((123_456 % 37) / 100)


# --------------------------------------------------------------------------- ZIP export


EXPORT_FILES = {
    "Queries.csv": HEADER + 'shed base,344,5317,6.47%,2.64\n"shed, large",5,50,10%,3',
    "Pages.csv": "Top pages,Clicks,Impressions,CTR,Position\nhttps://example.com/blog/x,10,100,10%,3\n",
    "Countries.csv": "Country,Clicks,Impressions,CTR,Position\nUnited Kingdom,10,100,10%,3\n",
    "Devices.csv": "Device,Clicks,Impressions,CTR,Position\nMobile,10,100,10%,3\n",
    "Search appearance.csv": "Search Appearance,Clicks,Impressions,CTR,Position\nProduct snippets,1,10,10%,3\n",
    "Chart.csv": "Date,Clicks,Impressions,CTR,Position\n2025-01-01,1,10,10%,3\n",
    "Filters.csv": "Filter,Value\nSearch type,Web\nDate,Last 3 months\nPage,+https://example.com/blog/x\n",
}


def test_export_zip_with_all_files_gives_rows_page_and_date_range(tmp_path):
    data = make_zip(EXPORT_FILES)
    path = tmp_path / "example.com-Performance-on-Search-2025-06-01.zip"
    path.write_bytes(data)
    for export in (read_export(data, "export.zip"), read_export(path), read_export(str(path))):
        assert [r.query for r in export.rows] == ["shed base", "shed, large"]
        assert export.date_range == "Last 3 months"
        assert export.page == "https://example.com/blog/x"
        assert export.page_filter == "+https://example.com/blog/x"
        assert sorted(export.files) == sorted(EXPORT_FILES)


@pytest.mark.parametrize(
    ("value", "page"),
    [
        ("+https://example.com/a", "https://example.com/a"),
        ("=https://example.com/a", "https://example.com/a"),
        ("https://example.com/b", "https://example.com/b"),
        ("+/blog/", None),  # every URL containing /blog/: many pages, none named
        ("-https://example.com/a", None),
        ("~^https://example.com/.*", None),
    ],
)
def test_page_filter_operators(value, page):
    files = {"Queries.csv": HEADER + "a,1,10,10%,2\n", "Filters.csv": f"Filter,Value\nPage,{value}\n"}
    export = read_export(make_zip(files))
    assert export.page == page
    assert export.page_filter == value
    assert export.date_range is None


def test_export_with_dates_csv_and_files_in_a_folder():
    files = {
        "example.com-Performance/Queries.csv": HEADER + "a,1,10,10%,2\n",
        "example.com-Performance/Dates.csv": "Date,Clicks,Impressions,CTR,Position\n",
        "example.com-Performance/Filters.csv": "Filter,Value\nDate,Last 28 days\n",
    }
    export = read_export(make_zip(files), "upload.zip")
    assert [r.query for r in export.rows] == ["a"]
    assert export.date_range == "Last 28 days" and export.page is None


def test_zip_without_queries_csv_is_refused_listing_what_it_holds():
    data = make_zip({k: v for k, v in EXPORT_FILES.items() if k != "Queries.csv"})
    with pytest.raises(GscFormatError) as caught:
        read_export(data, "export.zip")
    message = str(caught.value)
    assert message.startswith("export.zip has no Queries.csv (it holds: ")
    assert "Pages.csv" in message


def test_errors_inside_the_zip_name_the_member_and_line():
    data = make_zip({"Queries.csv": HEADER + "a,1,10,10%,2\nb,1,ten,10%,2\n"})
    with pytest.raises(GscFormatError, match=r"^export.zip: Queries.csv line 3, column Impressions"):
        read_export(data, "export.zip")


def test_zip_bomb_is_refused(monkeypatch):
    monkeypatch.setattr(gsc, "MAX_UNCOMPRESSED_BYTES", 100_000)
    bomb = make_zip({"Queries.csv": HEADER + "a,1,10,10%,2\n" * 20_000})  # ~300 KB that packs to ~1 KB
    assert len(bomb) < 5_000
    with pytest.raises(GscFormatError, match="unpacks to"):
        read_export(bomb, "bomb.zip")


def test_zip_with_path_tricks_is_refused():
    for name in ("../Queries.csv", "/etc/Queries.csv", "C:/Queries.csv", "a/../../Queries.csv"):
        with pytest.raises(GscFormatError, match="unsafe path"):
            read_export(make_zip({name: HEADER + "a,1,10,10%,2\n"}), "tricky.zip")


def test_zip_with_two_queries_files_is_refused():
    files = {"a/Queries.csv": HEADER, "b/queries.csv": HEADER}
    with pytest.raises(GscFormatError, match="2 files named Queries.csv"):
        read_export(make_zip(files))


def test_broken_zip_is_refused():
    data = make_zip(EXPORT_FILES)[:200]
    with pytest.raises(GscFormatError, match="not a readable ZIP"):
        read_export(data, "cut.zip")


def test_queries_csv_on_its_own(tmp_path):
    path = tmp_path / "Queries.csv"
    path.write_text(HEADER + "a,1,10,10%,2\n")
    export = read_export(path)
    assert [r.query for r in export.rows] == ["a"]
    assert export.files == ["Queries.csv"] and export.page is None and export.date_range is None
    with pytest.raises(GscFormatError, match="^Queries.csv is empty$"):
        read_export(b"")


# --------------------------------------------------------------------------- page-and-query CSV


def test_page_query_csv_groups_rows_by_page():
    data = (
        "page,query,clicks,impressions,ctr,position\n"
        "https://example.com/a,shed base,10,100,0.1,2.5\n"
        "https://example.com/b,log cabin,1,50,2%,7\n"
        'https://example.com/a,"shed, large",0,20,0,12\n'
    )
    pages = parse_page_query_csv(data, source="pages.csv")
    assert list(pages) == ["https://example.com/a", "https://example.com/b"]
    assert [r.query for r in pages["https://example.com/a"]] == ["shed base", "shed, large"]
    assert pages["https://example.com/b"][0].ctr == pytest.approx(0.02)
    assert pages["https://example.com/a"][0].ctr == pytest.approx(0.1)


def test_page_query_csv_refusals_name_the_source():
    with pytest.raises(GscFormatError, match="^pages.csv line 1: missing column page"):
        parse_page_query_csv("query,clicks,impressions,ctr,position\n", source="pages.csv")
    with pytest.raises(GscFormatError, match="^pages.csv line 2, column page: the page is empty"):
        parse_page_query_csv("page,query,clicks,impressions,ctr,position\n ,a,1,1,1,1\n", source="pages.csv")
    with pytest.raises(GscFormatError, match="^pages.csv is empty$"):
        parse_page_query_csv(b"", source="pages.csv")


# --------------------------------------------------------------------------- filters


def kw(query: str, clicks: float, impressions: float, position: float) -> KeywordRow:
    return KeywordRow(query=query, clicks=clicks, impressions=impressions, ctr=0, position=position)


ROWS = [
    kw("shed base", 10, 1000, 4),
    kw("acme sheds review", 50, 900, 2),
    kw("AcmeSheds near me", 5, 800, 3),
    kw("metal shed", 30, 500, 12),
    kw("place a shed", 1, 400, 25),
    kw("bsd sheds", 2, 300, 8),
    kw("tiny shed", 0, 5, 40),
]


def queries(rows: list[KeywordRow]) -> list[str]:
    return [r.query for r in rows]


def test_filters_by_position_impressions_and_clicks():
    assert queries(apply_filters(ROWS, KeywordFilters(min_position=3, max_position=12))) == [
        "shed base",
        "AcmeSheds near me",
        "metal shed",
        "bsd sheds",
    ]
    assert queries(apply_filters(ROWS, KeywordFilters(min_impressions=500, min_clicks=10))) == [
        "shed base",
        "acme sheds review",
        "metal shed",
    ]


def test_brand_terms_are_left_out_case_insensitively():
    kept = queries(apply_filters(ROWS, KeywordFilters(brand_terms=["Acme Sheds", "BSD"])))
    assert kept == ["shed base", "metal shed", "place a shed", "tiny shed"]
    # A short term must stand as a word: "ace" does not remove "place a shed".
    assert "place a shed" in queries(apply_filters(ROWS, KeywordFilters(brand_terms=["ace"])))


def test_sorting_and_cap():
    assert queries(apply_filters(ROWS, KeywordFilters(sort_by="clicks", max_keywords=3))) == [
        "acme sheds review",
        "metal shed",
        "shed base",
    ]
    assert queries(apply_filters(ROWS, KeywordFilters(sort_by="position", max_keywords=2))) == [
        "acme sheds review",
        "AcmeSheds near me",
    ]
    assert queries(apply_filters(ROWS, KeywordFilters()))[:2] == ["shed base", "acme sheds review"]
    assert apply_filters(ROWS, KeywordFilters()) is not ROWS  # the input list is left alone


# --------------------------------------------------------------------------- Search Analytics API


def new_service_account() -> tuple[rsa.RSAPublicKey, str]:
    """A fresh service account key: the public half to check signatures with, the private key as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key.public_key(), pem


@pytest.fixture(scope="module")
def service_account():
    return new_service_account()


class FakeSearchConsole:
    """The token endpoint and searchAnalytics.query, as Google serves them, on 127.0.0.1."""

    def __init__(self, public_key, total_rows: int):
        self.public_key = public_key
        self.rows = [
            {
                "keys": [f"https://example.com/{'a' if i % 3 else 'b'}", f"query {i}"],
                "clicks": i % 7,
                "impressions": 100 + i,
                "ctr": (i % 7) / (100 + i),
                "position": 1 + i / 10,
            }
            for i in range(total_rows)
        ]
        self.failures: dict[int, list[int]] = {}  # startRow -> statuses to answer first, in order
        self.query_log: list[dict] = []  # every query request: path, body, auth, status answered
        self.token_log: list[dict] = []
        self.token_status = 200
        self.issued = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None):
                send_json(self, status, body, headers)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    if self.path == "/token":
                        self._token(body)
                    else:
                        self._query(body)

            def _token(self, body: bytes):
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                claims = jwt.decode(
                    form["assertion"], fake.public_key, algorithms=["RS256"], audience=f"{fake.url}/token"
                )
                fake.token_log.append({"form": form, "claims": claims})
                if fake.token_status != 200:
                    return self._send(fake.token_status, {"error": "invalid_grant", "error_description": "Invalid JWT"})
                fake.issued += 1
                self._send(200, {"access_token": f"token-{fake.issued}", "expires_in": 3599, "token_type": "Bearer"})

            def _query(self, body: bytes):
                request = json.loads(body)
                entry = {"path": self.path, "body": request, "auth": self.headers.get("Authorization")}
                fake.query_log.append(entry)
                if entry["auth"] != f"Bearer token-{fake.issued}":
                    entry["status"] = 401
                    return self._send(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
                if fake.failures.get(request["startRow"]):
                    entry["status"] = fake.failures[request["startRow"]].pop(0)
                    return self._send(
                        entry["status"],
                        {"error": {"code": entry["status"], "message": "try later"}},
                        {"Retry-After": "0"},
                    )
                entry["status"] = 200
                start, limit = request["startRow"], request["rowLimit"]
                rows = fake.rows[start : start + limit]
                self._send(
                    200,
                    {"rows": rows, "responseAggregationType": "byPage"}
                    if rows
                    else {"responseAggregationType": "byPage"},
                )

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def credentials(pem: str, token_uri: str) -> dict:
    return {
        "type": "service_account",
        "client_email": "reader@project.iam.gserviceaccount.com",
        "private_key_id": "k1",
        "private_key": pem,
        "token_uri": token_uri,
    }


async def test_query_paginates_retries_and_signs_requests(service_account):
    public_key, pem = service_account
    with FakeSearchConsole(public_key, total_rows=100) as fake:
        fake.failures = {0: [429], 40: [503]}
        client = SearchAnalyticsClient(
            fake.url, credentials=credentials(pem, f"{fake.url}/token"), row_limit=40, backoff_base=0.001
        )
        async with client:
            pages = await client.query("https://example.com/", "2025-01-01", "2025-03-31")

    sequence = [(e["body"]["startRow"], e["status"]) for e in fake.query_log]
    assert sequence == [(0, 429), (0, 200), (40, 503), (40, 200), (80, 200), (100, 200)]
    assert {e["path"] for e in fake.query_log} == {"/sites/https%3A%2F%2Fexample.com%2F/searchAnalytics/query"}
    first = fake.query_log[0]["body"]
    assert first == {
        "startDate": "2025-01-01",
        "endDate": "2025-03-31",
        "dimensions": ["page", "query"],
        "rowLimit": 40,
        "startRow": 0,
    }
    assert {e["auth"] for e in fake.query_log} == {"Bearer token-1"}
    assert len(fake.token_log) == 1  # the token is cached across pages and retries
    token_request = fake.token_log[0]
    assert token_request["form"]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = token_request["claims"]
    assert claims["iss"] == "reader@project.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/webmasters.readonly"
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token_request["form"]["assertion"])["kid"] == "k1"

    assert sorted(pages) == ["https://example.com/a", "https://example.com/b"]
    got = {(page, r.query): r for page, rows in pages.items() for r in rows}
    assert len(got) == 100
    source = fake.rows[57]
    row = got[tuple(source["keys"])]
    assert (row.clicks, row.impressions, row.position) == (source["clicks"], source["impressions"], source["position"])
    assert row.ctr == pytest.approx(source["ctr"])
    assert client.requests == 1 + 6  # one token request, six query requests


async def test_page_filter_and_site_property_in_the_path(service_account):
    public_key, pem = service_account
    with FakeSearchConsole(public_key, total_rows=3) as fake:
        async with SearchAnalyticsClient(fake.url, credentials=credentials(pem, f"{fake.url}/token")) as client:
            await client.query("sc-domain:example.com", "2025-01-01", "2025-01-31", page="https://example.com/a")
    assert fake.query_log[0]["path"] == "/sites/sc-domain%3Aexample.com/searchAnalytics/query"
    assert fake.query_log[0]["body"]["dimensionFilterGroups"] == [
        {"filters": [{"dimension": "page", "operator": "equals", "expression": "https://example.com/a"}]}
    ]
    assert [e["body"]["startRow"] for e in fake.query_log] == [0, 3]


async def test_expired_token_is_renewed_once(service_account):
    public_key, pem = service_account
    with FakeSearchConsole(public_key, total_rows=2) as fake:
        async with SearchAnalyticsClient(fake.url, credentials=credentials(pem, f"{fake.url}/token")) as client:
            await client.query("https://example.com/", "2025-01-01", "2025-01-31")
            fake.issued += 1  # the server forgets the token it gave: the next call gets a 401
            pages = await client.query("https://example.com/", "2025-01-01", "2025-01-31")
    assert sum(len(rows) for rows in pages.values()) == 2
    assert [e["status"] for e in fake.query_log] == [200, 200, 401, 200, 200]
    assert len(fake.token_log) == 2


async def test_persistent_failures_and_refusals_raise_without_leaking_secrets(service_account):
    public_key, pem = service_account
    with FakeSearchConsole(public_key, total_rows=2) as fake:
        fake.failures = {0: [503] * 3}
        async with SearchAnalyticsClient(
            fake.url, credentials=credentials(pem, f"{fake.url}/token"), max_tries=3, backoff_base=0.001
        ) as client:
            with pytest.raises(SearchConsoleError) as caught:
                await client.query("https://example.com/", "2025-01-01", "2025-01-31")
        assert caught.value.status == 503 and "after 3 tries" in str(caught.value)

        fake.failures = {0: [403]}
        async with SearchAnalyticsClient(
            fake.url, credentials=credentials(pem, f"{fake.url}/token"), backoff_base=0.001
        ) as client:
            with pytest.raises(SearchConsoleError) as caught:
                await client.query("https://example.com/", "2025-01-01", "2025-01-31")
        assert caught.value.status == 403
        assert len([e for e in fake.query_log if e["status"] == 403]) == 1  # 4xx is not retried

        fake.token_status = 400
        client = SearchAnalyticsClient(fake.url, credentials=credentials(pem, f"{fake.url}/token"))
        with pytest.raises(SearchConsoleError, match="invalid_grant") as caught:
            await client.query("https://example.com/", "2025-01-01", "2025-01-31")
        await client.aclose()
    for text in (str(caught.value), repr(client)):
        assert "PRIVATE KEY" not in text and pem[40:80] not in text
        assert "token-" not in text


async def test_a_long_prompt_from_the_api_is_kept_whole_not_skipped(service_account):
    public_key, pem = service_account
    prompt = " ".join(f"word{i}" for i in range(250))  # about 1,700 characters, as assistants' prompts come
    with FakeSearchConsole(public_key, total_rows=2) as fake:
        fake.rows[1]["keys"][1] = prompt
        async with SearchAnalyticsClient(fake.url, credentials=credentials(pem, f"{fake.url}/token")) as client:
            pages = await client.query("https://example.com/", "2025-01-01", "2025-01-31")
    assert client.skipped_rows == 0
    assert prompt in {r.query for rows in pages.values() for r in rows}


def test_incomplete_credentials_are_refused_by_name():
    with pytest.raises(ValueError, match="private_key, token_uri"):
        SearchAnalyticsClient(credentials={"client_email": "a@b"})


async def test_transport_failures_are_retried_then_reported(service_account):
    _, pem = service_account
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        client = SearchAnalyticsClient(
            "http://127.0.0.1:9",
            credentials=credentials(pem, "http://127.0.0.1:9/token"),
            http=http,
            max_tries=3,
            backoff_base=0.001,
        )
        with pytest.raises(SearchConsoleError, match="could not be reached"):
            await client.query("https://example.com/", "2025-01-01", "2025-01-31")
    assert attempts == 3


# --------------------------------------------------------------------------- real export


@pytest.mark.realdata
@pytest.mark.skipif(not (REALDATA / "gsc-export-sheds").is_dir(), reason="shared/realdata is absent")
def test_real_search_console_export():
    folder = REALDATA / "gsc-export-sheds"
    rows = parse_queries_csv((folder / "Queries.csv").read_bytes())
    assert len(rows) == 1000
    assert all(1 <= r.position <= 1000 and 0 <= r.ctr <= 1 for r in rows)
    assert any("," in r.query for r in rows)  # the quoted query survives

    archive = make_zip({path.name: path.read_bytes() for path in folder.glob("*.csv")})
    export = read_export(archive, "sheds-export.zip")
    assert len(export.rows) == 1000
    assert export.date_range == "1 Jan 2025-31 Dec 2025"
    assert export.page_filter == "+/blog/"
    assert export.page is None  # "URLs containing /blog/" is not one page
    assert "Queries.csv" in export.files and "Filters.csv" in export.files
    assert [r.query for r in export.rows] == [r.query for r in rows]

    export_alone = read_export(folder / "Queries.csv")
    assert len(export_alone.rows) == 1000
