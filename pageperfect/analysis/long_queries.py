"""Long and prompt-like queries: what Search Console records when people type a prompt into an AI assistant.

Search Console now lists prompts among a page's queries ("i'm in my mid-50s with a modest income ... how does
X compare to other brands ..."). They are kept whole in the database and the result, but they are not searches
for a topic: grouped with the page's real queries they pull intents together that have nothing in common. The
rule, kept simple on purpose:

- **long**: more than LONG_QUERY_WORDS (32) words. Google web search reads at most 32 words of a query, so a
  longer one was typed for an assistant;
- **prompt-like**: at least PROMPT_MIN_WORDS (12) words and opening as an instruction or a first-person
  request to an assistant (PROMPT_OPENINGS: "can you", "write", "explain", "i'm", "help me", ...).

A flagged query is left out of clustering unless the job sets `include_long_queries`; when it is clustered, it
is embedded from its first EMBED_WORDS words (at most EMBED_CHARS characters), the part an embedding model
reads well. Its text is never cut anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from pageperfect.models import KeywordRow

LONG_QUERY_WORDS = 32
PROMPT_MIN_WORDS = 12
EMBED_WORDS = 32
EMBED_CHARS = 256
PROMPT_OPENINGS = (
    "act as",
    "pretend",
    "you are",
    "imagine",
    "can you",
    "could you",
    "would you",
    "will you",
    "please",
    "help me",
    "give me",
    "tell me",
    "show me",
    "write",
    "generate",
    "create",
    "draft",
    "summarize",
    "summarise",
    "rewrite",
    "explain",
    "i'm",
    "im",
    "i am",
    "i want",
    "i need",
    "i have",
    "i've",
    "my",
)
_OPENINGS = tuple(tuple(opening.split()) for opening in PROMPT_OPENINGS)


def is_long_query(query: str) -> bool:
    """True for a query over LONG_QUERY_WORDS words, or a prompt to an assistant (see the module's rule)."""
    words = query.split()
    if len(words) > LONG_QUERY_WORDS:
        return True
    if len(words) < PROMPT_MIN_WORDS:
        return False
    head = [w.casefold().replace("\u2019", "'").strip(",.:;!?") for w in words[:3]]
    return any(tuple(head[: len(opening)]) == opening for opening in _OPENINGS)


def count_long(queries: Iterable[str]) -> int:
    return sum(1 for query in queries if is_long_query(query))


def split_long(rows: list[KeywordRow]) -> tuple[list[KeywordRow], list[KeywordRow]]:
    """(ordinary rows, long or prompt-like rows), each in the input order."""
    ordinary: list[KeywordRow] = []
    flagged: list[KeywordRow] = []
    for row in rows:
        (flagged if is_long_query(row.query) else ordinary).append(row)
    return ordinary, flagged


def embedding_text(query: str) -> str:
    """What is embedded for a query: the query itself, or a flagged one's first words."""
    if not is_long_query(query):
        return query
    text = " ".join(query.split()[:EMBED_WORDS])
    if len(text) > EMBED_CHARS:
        text = text[:EMBED_CHARS].rsplit(" ", 1)[0] or text[:EMBED_CHARS]
    return text
