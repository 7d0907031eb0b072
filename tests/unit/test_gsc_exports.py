"""Search Console exports as they really come: long prompts, other delimiters and encodings, page-and-query
files under other headers, empty exports, ZIPs with odd names, site-wide exports. Each case on a fixture made
here (the real files that showed them are not in the repository)."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from pageperfect.analysis.long_queries import (
    EMBED_CHARS,
    LONG_QUERY_WORDS,
    count_long,
    embedding_text,
    is_long_query,
    split_long,
)
from pageperfect.models import KeywordRow
from pageperfect.sources.gsc import (
    GscFormatError,
    is_page_query_file,
    pages_for_import,
    parse_page_query_csv,
    read_export,
)

HEADER = ["Top queries", "Clicks", "Impressions", "CTR", "Position"]
PROMPT = (
    "i'm in my mid-50s with a modest income and I want a garden room that will last, how does the "
    "Tiger Sheds range compare to other brands for insulation, build quality and after-sales support, "
    "and what should I ask before ordering? "
) * 6


def csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\r\n") -> str:
    def cell(value: str) -> str:
        if any(c in value for c in (delimiter, '"', "\n", "\r")):
            return '"' + value.replace('"', '""') + '"'
        return value

    return "".join(delimiter.join(cell(v) for v in row) + newline for row in rows)


def refused(data, filename: str | None = None) -> str:
    with pytest.raises(GscFormatError) as caught:
        read_export(data, filename)
    return str(caught.value)


def make_zip(files: dict[str, str | bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


# --------------------------------------------------------------------------- 1. long queries


def test_case1_a_1231_character_prompt_in_a_1000_row_export_is_kept_whole():
    prompt = " ".join(PROMPT.split())[:1231]
    rows = [HEADER] + [[f"shed query {i}", "1", "10", "10%", "3"] for i in range(999)]
    wrapped = prompt[:400].rsplit(" ", 1)[0] + "\n" + prompt[len(prompt[:400].rsplit(" ", 1)[0]) + 1 :]
    rows.insert(620, [wrapped, "2", "31", "6.45%", "4.5"])
    export = read_export(csv_text(rows).encode())
    assert len(export.rows) == 1000
    assert prompt in {r.query for r in export.rows}
    assert count_long(r.query for r in export.rows) == 1


def test_case1_the_long_query_rule():
    assert is_long_query(" ".join(["shed"] * (LONG_QUERY_WORDS + 1)))
    assert not is_long_query(" ".join(["shed"] * LONG_QUERY_WORDS))
    assert is_long_query("can you tell me which shed base is best for a sloping garden with clay soil")
    assert is_long_query("I’m building a log cabin on a budget and need to know which roof felt to use")
    assert not is_long_query("can you paint a shed")  # short: a search
    assert not is_long_query("best shed base for a sloping garden with clay soil and a lot of rain uk")
    short, long = split_long([KeywordRow(query=q, impressions=1, position=1) for q in ("shed base", PROMPT)])
    assert [r.query for r in short] == ["shed base"] and [r.query for r in long] == [" ".join(PROMPT.split())]
    text = embedding_text(PROMPT)
    assert len(text) <= EMBED_CHARS and " ".join(PROMPT.split()).startswith(text)
    assert embedding_text("shed base") == "shed base"


# --------------------------------------------------------------------------- 2. delimiters and encodings

ROWS = [
    HEADER,
    ["shed base", "8", "120", "6.67%", "2.5"],
    ["garden, room", "3", "40", "7.5%", "4"],
    ["café crème shed", "1", "10", "10%", "9"],
]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252"])
def test_case2_every_delimiter_and_encoding(delimiter, encoding):
    data = csv_text(ROWS, delimiter).encode(encoding)
    export = read_export(data)
    assert [(r.query, r.clicks, r.impressions, r.position) for r in export.rows] == [
        ("shed base", 8, 120, 2.5),
        ("garden, room", 3, 40, 4),
        ("café crème shed", 1, 10, 9),
    ]
    assert export.rows[0].ctr == pytest.approx(0.0667)
    assert export.delimiter == delimiter


def test_case2_excel_unicode_text_and_european_decimals():
    # Excel's "Unicode Text" save: UTF-16 LE with a BOM, tab-separated; a European locale writes decimal commas.
    rows = [HEADER, ["shed base", "8", "120", "6,67%", "2,5"], ["log cabin", "0", "12", "0 %", "11"]]
    export = read_export(csv_text(rows, "\t").encode("utf-16"))
    assert export.encoding == "UTF-16 LE" and export.delimiter == "\t"
    assert export.rows[0].ctr == pytest.approx(0.0667) and export.rows[0].position == pytest.approx(2.5)
    semicolon = csv_text([HEADER, ["shed", "8", "120", "6,67%", "2,5"]], ";").encode("cp1252")
    assert read_export(semicolon).rows[0].position == pytest.approx(2.5)
    excel_sep_line = ("sep=;\r\n" + csv_text([HEADER, ["shed", "1", "10", "10%", "2"]], ";")).encode()
    assert [r.query for r in read_export(excel_sep_line).rows] == ["shed"]


def test_case2_a_header_that_does_not_match_says_what_was_read_and_what_was_expected():
    data = csv_text(
        [["Suchanfragen", "Klicks", "Impressionen", "CTR", "Position"], ["schuppen", "1", "2", "3%", "4"]], ";"
    ).encode("utf-16")
    assert refused(data) == (
        "Queries.csv line 1: missing column Top queries: the header, read as UTF-16 LE with a semicolon between "
        "columns, holds 5 columns ('Suchanfragen', 'Klicks', 'Impressionen', 'CTR', 'Position'); expected Top "
        "queries (or Query), Clicks, Impressions, CTR and Position"
    )
    message = refused(csv_text([["Top queries", "Clicks", "CTR", "Position"]], ";").encode("utf-8-sig"))
    assert "missing column Impressions: the header, read as UTF-8 with BOM with a semicolon" in message
    assert "('Top queries', 'Clicks', 'CTR', 'Position')" in message


# --------------------------------------------------------------------------- 3. page-and-query files

PAGE_HEADERS = ["Page", "Landing Page", "URL", "page", "Landing page", "Top pages", "Address", "landing_page"]


@pytest.mark.parametrize("page_header", PAGE_HEADERS)
def test_case3_a_page_column_under_any_name_groups_rows_by_page(page_header):
    rows = [
        ["Query", page_header, "Url Clicks", "Impressions", "URL CTR", "Average Position"],
        ["shed base", "https://example.com/a", "8", "100", "8%", "2"],
        ["shed base", "https://example.com/b", "8", "100", "8%", "3"],
        ["log cabin", "https://example.com/a", "1", "10", "10%", "5"],
    ]
    export = read_export(csv_text(rows).encode(), "looker.csv")
    assert export.rows == [] and export.pages is not None
    pages = pages_for_import(export)
    assert {url: [(r.query, r.clicks) for r in rows] for url, rows in pages.items()} == {
        "https://example.com/a": [("shed base", 8), ("log cabin", 1)],
        "https://example.com/b": [("shed base", 8)],  # never summed with a's 8 clicks
    }


def test_case3_page_selects_its_rows_or_names_the_pages_present():
    rows = [
        ["Landing Page", "Query", "Clicks", "Impressions", "CTR", "Position"],
        ["https://example.com/a", "shed base", "8", "100", "8%", "2"],
        ["https://example.com/b", "shed base", "8", "100", "8%", "3"],
    ]
    export = read_export(csv_text(rows, "\t").encode("utf-16"), "pages.tsv")
    only = pages_for_import(export, "https://EXAMPLE.com/b")
    assert list(only) == ["https://example.com/b"] and only["https://example.com/b"][0].clicks == 8
    with pytest.raises(GscFormatError) as caught:
        pages_for_import(export, "https://example.com/c")
    assert str(caught.value) == (
        "pages.tsv has no rows for https://example.com/c; the 2 pages it holds: https://example.com/a, "
        "https://example.com/b. Name one of them (--page URL, or the page field of the upload), or none to "
        "import every page"
    )
    assert parse_page_query_csv(csv_text(rows, ";").encode())["https://example.com/a"][0].position == 2


def test_case3_a_page_and_query_file_is_told_from_a_url_list_in_any_encoding():
    header = [["Query", "Landing Page", "Clicks", "Impressions", "CTR", "Position"]]
    assert is_page_query_file(csv_text(header, "\t").encode("utf-16"))
    assert is_page_query_file(csv_text(header, ";").encode("cp1252"))
    assert not is_page_query_file(b"https://example.com/a\nhttps://example.com/b\n")
    assert not is_page_query_file(csv_text([HEADER]).encode())  # one page's Queries.csv


# --------------------------------------------------------------------------- 4. no rows


@pytest.mark.parametrize(
    "data",
    [csv_text([HEADER]).encode(), csv_text([HEADER], "\t").encode("utf-16"), csv_text([["Page"] + HEADER]).encode()],
)
def test_case4_an_export_with_no_rows_is_refused(data):
    assert refused(data) == (
        "Queries.csv has a header and no rows: Search Console found no queries for the export's dates and "
        "filters (widen them and export again)"
    )


def test_case4_a_zip_whose_queries_have_no_rows_is_refused():
    message = refused(make_zip({"Queries.csv": csv_text([HEADER]), "Filters.csv": "Filter,Value\n"}), "e.zip")
    assert message.startswith("e.zip: Queries.csv has a header and no rows")


# --------------------------------------------------------------------------- 5. ZIP members

ONE_PAGE_FILTERS = "Filter,Value\r\nSearch type,Web\r\nDate,Last 3 months\r\nPage,+https://example.com/a\r\n"


def test_case5_a_colon_in_a_name_is_fine_and_other_files_are_ignored():
    files = {
        "Queries.csv": csv_text(ROWS),
        "Filters.csv": ONE_PAGE_FILTERS,
        "Project Brief: Oil Tank (final).svg": "<svg/>",
        "notes/Q&A: what next.txt": "x",
        "Pages.csv": 'not, even, a, table\n"unclosed',
    }
    export = read_export(make_zip(files), "export.zip")
    assert len(export.rows) == 3 and export.page == "https://example.com/a"
    assert "Project Brief: Oil Tank (final).svg" in export.files


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../Queries.csv", "a parent-directory step (..)"),
        ("a/../../evil.svg", "a parent-directory step (..)"),
        ("/etc/Queries.csv", "an absolute path"),
        ("C:/Queries.csv", "a drive prefix"),
        ("c:evil.txt", "a drive prefix"),
        ("\\\\server\\share\\x.csv", "an absolute path"),
    ],
)
def test_case5_unsafe_names_are_refused_with_the_reason(name, reason):
    message = refused(make_zip({"Queries.csv": csv_text(ROWS), name: "x"}), "tricky.zip")
    assert message == f"tricky.zip holds a file with an unsafe path: {name!r} ({reason})"


def test_case5_links_are_refused():
    message = refused(make_zip({"Queries.csv": csv_text(ROWS)}, links=("Chart.csv",)), "link.zip")
    assert message == "link.zip holds a file with an unsafe path: 'Chart.csv' (a symbolic link)"


# --------------------------------------------------------------------------- 7. site-wide exports


def test_case7_a_site_wide_export_is_refused_for_one_page_unless_meant():
    export = read_export(
        make_zip(
            {"Queries.csv": csv_text(ROWS), "Filters.csv": "Filter,Value\r\nSearch type,Web\r\nDate,Last 3 months\r\n"}
        ),
        "site.zip",
    )
    with pytest.raises(GscFormatError) as caught:
        pages_for_import(export, "https://example.com/a")
    assert str(caught.value) == (
        "site.zip is a site-wide export: its Filters.csv sets no page, so its queries are the whole property's, "
        "not one page's; to export one page's queries, open Performance in Search Console, click + New, choose "
        "Page..., then Exact URL, enter the page's address and Apply, then Export; a page-and-query file (Page, "
        "Query, Clicks, Impressions, CTR, Position) imports many pages at once. If the whole site's queries are "
        "meant for this page, say so with --site-wide (API: site_wide=true)"
    )
    assert list(pages_for_import(export, "https://example.com/a", site_wide=True)) == ["https://example.com/a"]


def test_case7_a_filter_for_many_pages_is_refused_and_one_page_or_no_filters_file_is_not():
    many = read_export(make_zip({"Queries.csv": csv_text(ROWS), "Filters.csv": "Filter,Value\nPage,+/blog/\n"}))
    with pytest.raises(
        GscFormatError,
        match=r"^export.zip is filtered to the pages matching '\+/blog/', many "
        r"pages rather than one.*--site-wide",
    ):
        pages_for_import(many, "https://example.com/blog/a")
    one = read_export(make_zip({"Queries.csv": csv_text(ROWS), "Filters.csv": ONE_PAGE_FILTERS}))
    assert list(pages_for_import(one)) == ["https://example.com/a"]
    alone = read_export(csv_text(ROWS).encode())  # a Queries.csv alone cannot say: the caller names the page
    assert list(pages_for_import(alone, "https://example.com/x")) == ["https://example.com/x"]
