"""Rewrite drafts: prompts, briefs without a model, and drafts from a chat model over real HTTP."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pageperfect.analysis.rewrite import (
    PROMPT_VERSION,
    ChatLLM,
    GapContext,
    RewriteError,
    build_prompt,
    gap_context,
    draft_for_gap,
    make_llm,
    split_for_diff,
    suggested_heading,
    unified_diff,
)
from pageperfect.analysis.segment import extract_page
from tests.openai_server import OpenAIStub

API_KEY = "sk-test-very-secret-4242"

PASSAGE = (
    "A solid base keeps a shed level and dry. We recommend a concrete slab for larger sheds. "
    "Timber frames suit smaller buildings.\n\n"
    "Whatever you choose, check the ground is firm first."
)


def gap(**changes) -> GapContext:
    values = dict(
        cluster_id=7,
        representative="how to build a shed base on uneven ground",
        keywords=[
            "how to build a shed base on uneven ground",
            "shed base on a slope",
            "levelling ground for a shed",
        ],
        total_impressions=12_345,
        avg_position=8.27,
        best_segment_id="seg-12",
        best_heading_path=["Shed bases", "Choosing a base"],
        best_text=PASSAGE,
        neighbours=["Our sheds come flat-packed.", "Delivery is free in mainland UK."],
    )
    values.update(changes)
    return GapContext(**values)


def apply_unified_diff(lines: list[str], diff: str) -> list[str]:
    """Apply a unified diff to `lines`, checking every context and removed line and every hunk count."""
    diff_lines = diff.split("\n")
    assert diff_lines[:2] == ["--- original", "+++ draft"]
    out: list[str] = []
    pos = 0
    i = 2
    while i < len(diff_lines):
        header = re.fullmatch(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", diff_lines[i])
        assert header, diff_lines[i]
        old_len = int(header[2] or 1)
        new_len = int(header[4] or 1)
        start = int(header[1]) - 1 if old_len else int(header[1])
        out.extend(lines[pos:start])
        pos = start
        seen_old = seen_new = 0
        i += 1
        while i < len(diff_lines) and not diff_lines[i].startswith("@@"):
            tag, text = diff_lines[i][0], diff_lines[i][1:]
            assert tag in " -+", diff_lines[i]
            if tag in " -":
                assert lines[pos] == text
                pos += 1
                seen_old += 1
            if tag in " +":
                out.append(text)
                seen_new += 1
            i += 1
        assert (seen_old, seen_new) == (old_len, new_len)
    out.extend(lines[pos:])
    return out


def assert_valid_diff(original: str, draft: str, diff: str) -> None:
    assert apply_unified_diff(split_for_diff(original), diff) == split_for_diff(draft)


class ScriptedChat(OpenAIStub):
    """The OpenAI stub, answering chat completions with a set reply."""

    reply = ""

    def _chat(self, body: dict) -> tuple[int, dict]:
        status, payload = super()._chat(body)
        if status == 200:
            payload["choices"][0]["message"]["content"] = self.reply
        return status, payload


@pytest.fixture
def chat():
    with ScriptedChat() as stub:
        yield stub


def secrets_absent(draft) -> None:
    for name, value in dataclasses.asdict(draft).items():
        assert API_KEY not in str(value), name


# --------------------------------------------------------------------------- prompt


def test_prompt_carries_the_queries_the_passage_and_the_rules():
    system, user = build_prompt(gap(), "Shed bases: a guide")
    for query in gap().keywords:
        assert f"- {query}" in user
    assert "Page title: Shed bases: a guide" in user
    assert "Section of the passage: Shed bases › Choosing a base" in user
    assert "12,345 impressions" in user and "average position 8.3" in user
    assert f"<<<\n{PASSAGE}\n>>>" in user
    assert "Our sheds come flat-packed." in user
    assert "[ADD:" in system and "Do not invent facts" in system
    assert "plain text" in system.lower()
    assert "ACTION: REWRITE or ACTION: INSERT_AFTER" in system


def test_prompt_task_follows_the_action():
    _, choose = build_prompt(gap(), None)
    assert "If the passage is on the same subject" in choose and "Page title: (none)" in choose
    _, rewrite = build_prompt(gap(), None, action="rewrite")
    assert "Begin with ACTION: REWRITE" in rewrite
    _, insert = build_prompt(gap(), None, action="insert_after")
    assert "Begin with ACTION: INSERT_AFTER" in insert
    _, nothing_close = build_prompt(gap(best_text=None, best_segment_id=None), None, action="rewrite")
    assert "no passage close" in nothing_close and "Passage:" not in nothing_close


def test_prompt_clips_long_texts():
    long_passage = "word " * 5000
    _, user = build_prompt(gap(best_text=long_passage, neighbours=["n " * 5000] * 10), None)
    assert len(user) < 6000 + 4 * 1200 + 2000


def test_suggested_heading_from_the_query():
    assert suggested_heading("how to build a shed base") == "How to build a shed base"
    assert suggested_heading("what is the best shed base") == "What is the best shed base?"
    assert suggested_heading("how deep  should a shed base be?") == "How deep should a shed base be?"
    assert suggested_heading("shed base ideas") == "Shed base ideas"


# --------------------------------------------------------------------------- briefs


async def test_brief_without_a_model_lists_queries_heading_and_insertion_point():
    draft = await draft_for_gap(gap(), "Shed bases", None, similarity=0.41)
    assert draft.kind == "brief" and draft.model is None and draft.prompt_version == PROMPT_VERSION
    assert draft.action == "insert_after" and draft.target_segment_id == "seg-12"
    assert draft.suggested_heading == "How to build a shed base on uneven ground"
    assert draft.original == PASSAGE
    brief = draft.draft[len(PASSAGE) :]
    assert draft.draft.startswith(PASSAGE)  # the brief goes after the passage it extends
    assert "BRIEF — no language model configured" in brief
    for query in gap().keywords:
        assert f"- {query}" in brief
    assert "Suggested heading: How to build a shed base on uneven ground" in brief
    assert 'right after the passage under "Shed bases › Choosing a base" (segment seg-12)' in brief
    assert "[ADD:" in brief
    assert_valid_diff(draft.original, draft.draft, draft.diff)
    changed = [line for line in draft.diff.split("\n")[2:] if line[:1] in "+-"]
    assert changed and all(line.startswith("+") for line in changed)  # a pure insertion


async def test_the_wordings_the_page_already_answers_are_marked_in_the_brief_and_the_prompt():
    answered = gap(answered=["levelling ground for a shed"])
    brief = (await draft_for_gap(answered, "Shed bases", None, similarity=0.41)).draft
    assert "- levelling ground for a shed (the page answers this wording already)" in brief
    assert "- shed base on a slope\n" in brief  # the others are still to answer
    _, user = build_prompt(answered, "Shed bases")
    assert "- levelling ground for a shed (the page answers this wording already)" in user
    assert "answers this wording" not in build_prompt(gap(), "Shed bases")[1]


def test_a_stored_gap_becomes_its_draft_context():
    row = {
        "cluster_id": 4,
        "representative": "shed base on a slope",
        "keywords": ["shed base on a slope", "levelling ground for a shed"],
        "total_impressions": 300.0,
        "avg_position": 9.5,
        "best_match": {"segment_id": "seg-2", "heading_path": ["Shed bases"], "text": PASSAGE, "similarity": 0.4},
        "explanation": {
            "words": {"found": ["shed"], "missing": ["slope"]},
            "not_split": {"queries": ["levelling ground for a shed"], "read_as": "answered", "reason": "…"},
        },
    }
    context = gap_context(row, ["Delivery is free."])
    assert (context.best_segment_id, context.best_heading_path, context.best_text) == ("seg-2", ["Shed bases"], PASSAGE)
    assert context.missing_words == ["slope"] and context.answered == ["levelling ground for a shed"]
    assert context.neighbours == ["Delivery is free."]
    turned = {**row, "explanation": {"not_split": {**row["explanation"]["not_split"], "read_as": "not answered"}}}
    assert gap_context(turned, []).answered == []  # a verdict the judge turned: those wordings were not answered
    bare = gap_context({**row, "best_match": None, "explanation": None}, [])
    assert (bare.best_segment_id, bare.best_heading_path, bare.missing_words, bare.answered) == (None, [], [], [])


async def test_brief_for_a_page_with_no_close_passage():
    many = [f"query {i}" for i in range(40)]
    draft = await draft_for_gap(
        gap(best_segment_id=None, best_heading_path=[], best_text=None, keywords=many), None, None
    )
    assert draft.original == "" and draft.target_segment_id is None
    assert "at the end of the page" in draft.draft
    assert "- query 14" in draft.draft and "- query 15" not in draft.draft and "- and 25 more" in draft.draft
    assert_valid_diff("", draft.draft, draft.diff)


async def test_a_brief_whose_closest_passage_is_a_heading_offers_no_passage_to_extend():
    heading = "Fertilizer: Feeding Your Plant"
    draft = await draft_for_gap(
        gap(best_heading_path=["Plant Care", heading], best_text=heading, best_segment_id="seg-3"), None, None
    )
    assert draft.kind == "brief" and draft.target_segment_id == "seg-3"
    assert "Passage to extend" not in draft.draft
    assert 'to the part headed "Plant Care › Fertilizer: Feeding Your Plant" (segment seg-3)' in draft.draft
    assert "as a part of its own" in draft.draft
    # A passage of text keeps its offer to extend it.
    assert "Passage to extend" in (await draft_for_gap(gap(), "Shed bases", None)).draft


async def test_make_llm_needs_a_key():
    assert make_llm(None, None, "gpt-4o-mini") is None
    assert make_llm("  ", "http://127.0.0.1:1/v1", "gpt-4o-mini") is None
    llm = make_llm(API_KEY, "http://127.0.0.1:1/v1", "my-model")
    assert isinstance(llm, ChatLLM) and llm.model == "my-model" and llm.name == "openai" and llm.requests == 0
    assert API_KEY not in repr(llm)
    await llm.aclose()


# --------------------------------------------------------------------------- drafts over HTTP


async def test_rewrite_draft_over_http(chat):
    chat.reply = (
        "ACTION: REWRITE\n"
        "HEADING: Building a shed base on uneven ground\n\n"
        "A solid base keeps a shed level and dry. On a slope, level the ground before you lay anything. "
        "We recommend a concrete slab for larger sheds.\n\n"
        "Whatever you choose, check the ground is firm first. [ADD: how far the ground may slope]"
    )
    llm = ChatLLM(API_KEY, base_url=chat.base_url, model="rewrite-model", timeout=10)
    draft = await draft_for_gap(gap(), "Shed bases", llm, similarity=0.5, min_rewrite_similarity=0.2)
    await llm.aclose()

    (request,) = chat.bodies["chat/completions"]
    assert request["model"] == "rewrite-model"
    system, user = (m["content"] for m in request["messages"])
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    for query in gap().keywords:
        assert query in user
    assert chat.authorization == [f"Bearer {API_KEY}"]
    assert llm.requests == 1

    assert draft.kind == "draft" and draft.action == "rewrite"
    assert draft.model == "rewrite-model" and draft.prompt_version == PROMPT_VERSION
    assert draft.original == PASSAGE and draft.target_segment_id == "seg-12"
    assert draft.suggested_heading == "Building a shed base on uneven ground"
    assert draft.draft.startswith("A solid base keeps a shed level and dry. On a slope")
    assert "ACTION" not in draft.draft and "HEADING" not in draft.draft
    assert_valid_diff(draft.original, draft.draft, draft.diff)
    assert "+On a slope, level the ground before you lay anything." in draft.diff.split("\n")
    assert "-Timber frames suit smaller buildings." in draft.diff.split("\n")
    assert draft.unsupported_numbers == []
    secrets_absent(draft)


async def test_low_similarity_forces_a_new_section_after_the_passage(chat):
    chat.reply = "ACTION: REWRITE\nHEADING: NONE\n\nLevel the ground first. A slab base needs [ADD: depth]."
    llm = ChatLLM(API_KEY, base_url=chat.base_url, model="m", timeout=10)
    draft = await draft_for_gap(gap(), None, llm, similarity=0.05, min_rewrite_similarity=0.2)
    await llm.aclose()
    user = chat.bodies["chat/completions"][0]["messages"][1]["content"]
    assert "Begin with ACTION: INSERT_AFTER" in user
    assert draft.action == "insert_after"  # the threshold wins over the model's choice
    assert draft.suggested_heading == "How to build a shed base on uneven ground"
    assert draft.draft == PASSAGE + "\n\nHow to build a shed base on uneven ground\n\n" + (
        "Level the ground first. A slab base needs [ADD: depth]."
    )
    assert_valid_diff(draft.original, draft.draft, draft.diff)
    assert all(not line.startswith("-") for line in draft.diff.split("\n")[2:])
    secrets_absent(draft)


async def test_model_may_choose_to_insert_and_slips_are_tolerated(chat):
    chat.reply = (
        "```\n**ACTION:** INSERT_AFTER\n## Levelling a slope\n\n"
        "Sheds on a slope need a level base. Ours cost £499 and last 25 years.\n```"
    )
    llm = ChatLLM(API_KEY, base_url=chat.base_url, model="m", timeout=10)
    draft = await draft_for_gap(gap(), None, llm)
    await llm.aclose()
    assert draft.action == "insert_after"
    assert draft.suggested_heading == "Levelling a slope"
    assert draft.draft.endswith(
        "Levelling a slope\n\nSheds on a slope need a level base. Ours cost £499 and last 25 years."
    )
    assert "```" not in draft.draft and "#" not in draft.draft
    assert draft.unsupported_numbers == ["25", "499"]  # invented figures are flagged for review
    assert_valid_diff(draft.original, draft.draft, draft.diff)


async def test_no_passage_means_a_new_section_with_an_empty_original(chat):
    chat.reply = "ACTION: INSERT_AFTER\nHEADING: Shed bases on a slope\n\nLevel the ground first."
    llm = ChatLLM(API_KEY, base_url=chat.base_url, model="m", timeout=10)
    draft = await draft_for_gap(gap(best_text=None, best_segment_id=None, best_heading_path=[]), None, llm)
    await llm.aclose()
    assert draft.original == "" and draft.draft == "Shed bases on a slope\n\nLevel the ground first."
    assert draft.diff.split("\n")[2] == "@@ -0,0 +1,3 @@"
    assert_valid_diff("", draft.draft, draft.diff)


async def test_rate_limits_are_retried_by_the_client(chat):
    chat.reply = "ACTION: REWRITE\nHEADING: NONE\n\nA better passage."
    chat.script_faults("chat/completions", [{"status": 429, "retry_after": 0}, 503])
    llm = ChatLLM(API_KEY, base_url=chat.base_url, model="m", timeout=10)
    draft = await draft_for_gap(gap(), None, llm)
    await llm.aclose()
    assert draft.draft == "A better passage."
    assert chat.requests["chat/completions"] == 3 and llm.requests == 1


async def test_an_empty_answer_is_an_error_not_a_draft(chat):
    llm = ChatLLM(API_KEY, base_url=chat.base_url, model="m", timeout=10)
    chat.reply = "   "
    with pytest.raises(RewriteError, match="empty answer"):
        await draft_for_gap(gap(), None, llm)
    chat.reply = "ACTION: REWRITE\nHEADING: Something"
    with pytest.raises(RewriteError, match="no passage"):
        await draft_for_gap(gap(), None, llm)
    await llm.aclose()


# --------------------------------------------------------------------------- diff


def test_diff_goes_sentence_by_sentence():
    original = "One. Two is here! Three?\n\nFour."
    draft = "One. Two is changed! Three?\n\nFour.\n\nFive."
    assert split_for_diff(original) == ["One.", "Two is here!", "Three?", "", "Four."]
    diff = unified_diff(original, draft)
    assert "-Two is here!" in diff.split("\n") and "+Two is changed!" in diff.split("\n")
    assert_valid_diff(original, draft, diff)
    assert unified_diff(original, original) == ""
    assert split_for_diff("") == []


async def test_a_brief_for_a_passage_before_the_first_subheading_names_its_place():
    page = extract_page(
        "<html><head><title>Shed Bases: A Buyer's Guide | Sheds Direct</title></head><body><article>"
        "<p>A shed lasts longer on a level, well-drained base than on bare soil or grass.</p>"
        "<h2>Choosing a base</h2><p>Concrete suits heavy sheds, timber frames suit sloping gardens.</p>"
        "</article></body></html>"
    )
    intro = next(s for s in page.segments if s.text.startswith("A shed lasts longer"))
    draft = await draft_for_gap(
        gap(best_segment_id=intro.segment_id, best_heading_path=list(intro.heading_path), best_text=intro.text),
        page.title,
        None,
        similarity=0.41,
    )
    assert f'right after the passage under "Shed Bases: A Buyer\'s Guide" (segment {intro.segment_id})' in draft.draft
