"""Does the page answer a search intent? Evidence from several signals, as a careful editor weighs it.

For every query and every passage of the page (each segment, and each sentence of
a segment that has several), three signals:

- `semantic`: cosine of the query, with the page's subject words taken out, and
  the passage. The subject is what the whole page is about ("cold brew"), so a
  query that only shares the subject is no longer "similar" to every passage;
- `semantic_full`: the same for the query as asked;
- `lexical`: the share of the query's distinctive words (stemmed, subject left
  out, each weighed by its rarity among the page's queries) that the passage,
  with its headings, contains; a compound the passage writes open ("peep hole")
  counts for the closed form ("peephole").

Each signal is the best over the passages; a query's evidence that it is covered
is the linear score

    logit = w_semantic * semantic + w_semantic_full * semantic_full + w_lexical * lexical + bias

(weights fitted per embedding provider on the labelled pages; docs/CALIBRATION.md),
and its coverage is sigmoid(logit). A cluster's coverage is the sigmoid of its
queries' impression-weighted mean logit; it is a gap below the threshold. When a
cluster holds queries that are clearly covered and queries that are clearly not
(logits beyond +/- split_margin), it is split into those two parts rather than
averaged into one verdict, when each part is an intent of its own: a part whose
queries share no link of the query graph the grouping uses (intents.link_graph:
each query's nearest queries in each view) is not taken for a second intent, so
the cluster stays whole and its evidence names those queries (`not_split`). The
rule is judged by the verdicts it gives on the labelled pages (docs/CALIBRATION.md);
of the queries it keeps in their cluster there, about half belong to the topic of
the rest of it.

Every decision keeps its evidence: the best passages with their scores, and which
distinctive words the best passage has and lacks.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from pageperfect.analysis.embeddings import content_stems, light_stem, text_words
from pageperfect.analysis.intents import NEIGHBORS, distinctive_stems, link_graph
from pageperfect.analysis.segment import headings_below_root

BLOCK_CELLS = 2**22  # query x passage cells computed at once
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
MIN_SENTENCE_WORDS = 3


@dataclass(frozen=True)
class CoverageModel:
    """The weights of the coverage logit, and how decisions are made from it."""

    semantic: float
    semantic_full: float
    lexical: float
    bias: float
    threshold: float = 0.5  # a cluster is a gap when its coverage is below this
    split_margin: float = 1.5  # logits beyond +/- this on both sides split a cluster
    split_needs_links: bool = True  # ... into parts that each have a link among their own queries
    judge_band: float = 1.0  # clusters with |logit| under this may go to the LLM judge
    passages: tuple[str, ...] = ("segment", "sentence")

    @property
    def boundary(self) -> float:
        """The logit at which coverage equals the threshold."""
        t = min(max(self.threshold, 1e-9), 1 - 1e-9)
        return math.log(t / (1 - t))

    def logit(self, semantic: np.ndarray, semantic_full: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        return self.semantic * semantic + self.semantic_full * semantic_full + self.lexical * lexical + self.bias


@dataclass
class Passage:
    segment_id: str
    heading_path: list[str]  # every heading above it, the page's root first: its place on the page
    text: str  # the passage's own text (a whole segment, or one sentence of it)
    kind: str  # "segment" | "sentence"
    # The headings below the page's root (pageperfect.analysis.segment.headings_below_root): the root is
    # shared by every passage, so it takes no part in matching.
    headings: list[str] = field(default_factory=list)

    @property
    def embed_text(self) -> str:
        """What is embedded: the innermost heading below the root, then the text (a heading embeds alone)."""
        if self.headings and self.headings[-1] != self.text:
            return f"{self.headings[-1]}: {self.text}"
        return self.text

    @property
    def words_text(self) -> str:
        """What its words are looked up in: every heading above it below the root, then the text."""
        return " ".join([*self.headings, self.text])


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(text) if len(s.split()) >= MIN_SENTENCE_WORDS]


WINDOW_SIZES = (2, 3)  # adjacent sentences a "window" passage holds
# Sentences and windows kept beside the segments, in page order: a page of thousands of segments would
# otherwise give tens of thousands of texts to embed. The labelled pages have 26 to 485 of them.
MAX_FINE_PASSAGES = 2_000


def passages_of(segments: Sequence, kinds: Sequence[str] = ("segment", "sentence")) -> list[Passage]:
    """The page's passages: each segment ("segment"), each sentence of the segments that have more than one
    ("sentence"), and runs of WINDOW_SIZES adjacent sentences under the same headings, across paragraphs
    ("window": an answer often takes two sentences, or a short paragraph and the next).

    A segment is a pageperfect.analysis.segment.Segment or anything with its segment_id, kind,
    heading_level, heading_path and text."""
    out: list[Passage] = []
    run: list[tuple[object, list[str], list[str], str]] = []  # (segment id, path, headings, sentence)
    for s in segments:
        path = list(s.heading_path)
        below = list(headings_below_root(path, s.heading_level))
        if "segment" in kinds:
            out.append(Passage(s.segment_id, path, s.text, "segment", below))
        if s.kind == "heading":
            out.extend(_windows(run, kinds))
            run = []
            continue
        sentences = split_sentences(s.text)
        if "sentence" in kinds and len(sentences) > 1:
            out.extend(Passage(s.segment_id, path, sentence, "sentence", below) for sentence in sentences)
        if run and run[-1][2] != below:
            out.extend(_windows(run, kinds))
            run = []
        run.extend((s.segment_id, path, below, sentence) for sentence in sentences or [s.text])
    out.extend(_windows(run, kinds))
    return _capped(out)


def _capped(passages: list[Passage]) -> list[Passage]:
    """Every segment, and the first MAX_FINE_PASSAGES sentences and windows in page order."""
    kept: list[Passage] = []
    fine = 0
    for p in passages:
        if p.kind != "segment":
            fine += 1
            if fine > MAX_FINE_PASSAGES:
                continue
        kept.append(p)
    return kept


def _windows(run: list[tuple], kinds: Sequence[str]) -> list[Passage]:
    """The windows of one run of sentences under the same headings; each text once, and none that is one
    segment's whole text (that segment is a passage already)."""
    if "window" not in kinds:
        return []
    out: list[Passage] = []
    seen: set[str] = set()
    texts: dict[object, list[str]] = {}  # each segment's sentences in the run, joined once below
    for sid, *_, sentence in run:
        texts.setdefault(sid, []).append(sentence)
    whole_text = {sid: " ".join(sentences) for sid, sentences in texts.items()}
    for size in WINDOW_SIZES:
        for start in range(len(run) - size + 1):
            part = run[start : start + size]
            text = " ".join(sentence for *_, sentence in part)
            segment_id, path, below, _ = part[0]
            whole = all(p[0] == segment_id for p in part) and whole_text[segment_id] == text
            if text in seen or whole:
                continue
            seen.add(text)
            out.append(Passage(segment_id, path, text, "window", below))
    return out


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


@dataclass
class QueryEvidence:
    """Per query: each signal's best value over the passages, and the best passage by the logit's terms."""

    semantic: np.ndarray
    semantic_full: np.ndarray
    lexical: np.ndarray
    logit: np.ndarray


class Evidence:
    """The signals of every query against every passage of one page, computed in blocks."""

    def __init__(
        self,
        queries: Sequence[str],
        vectors: np.ndarray,
        stripped_vectors: np.ndarray,
        subject: frozenset[str],
        passages: Sequence[Passage],
        passage_vectors: np.ndarray,
        model: CoverageModel,
    ) -> None:
        self.queries = list(queries)
        self.subject = frozenset(subject)
        self.passages = list(passages)
        self.model = model
        self._q = _unit(vectors)
        self._qs = _unit(stripped_vectors)
        self._p = _unit(passage_vectors) if len(passages) else np.zeros((0, self._q.shape[1]), np.float32)
        if self._p.shape[0] != len(self.passages):
            raise ValueError(f"{len(self.passages)} passages but {self._p.shape[0]} passage vectors")
        if len(self.passages) and self._p.shape[1] != self._q.shape[1]:
            raise ValueError(f"query vectors have {self._q.shape[1]} dims, passages {self._p.shape[1]}")
        self._words, self._passage_words, self.idf = self._lexical_parts()
        self._links: dict[int, sparse.csr_matrix] = {}  # shared with restricted views: the queries are the same

    def _lexical_parts(self) -> tuple[sparse.csr_matrix, sparse.csc_matrix, dict[str, float]]:
        n = len(self.queries)
        counts = Counter(s for q in self.queries for s in set(content_stems(q)))
        idf = {s: math.log((1 + n) / (1 + c)) + 1 for s, c in counts.items()}
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for i, q in enumerate(self.queries):
            stems = distinctive_stems(q, self.subject)
            total = sum(idf[s] for s in stems)
            for s in stems:
                rows.append(i)
                cols.append(vocab.setdefault(s, len(vocab)))
                vals.append(idf[s] / total)
        words = sparse.csr_matrix((vals, (rows, cols)), shape=(n, max(1, len(vocab))), dtype=np.float32)
        prow, pcol = [], []
        for j, p in enumerate(self.passages):
            for s in passage_stems(p.words_text):
                c = vocab.get(s)
                if c is not None:
                    prow.append(j)
                    pcol.append(c)
        present = sparse.csr_matrix(
            (np.ones(len(prow), dtype=np.float32), (prow, pcol)), shape=(len(self.passages), words.shape[1])
        )
        return words, present.T.tocsc(), idf

    def restricted(self, indices: Sequence[int]) -> Evidence:
        """The same evidence against only these passages (rows of `passages`): nothing is computed again, so one
        Evidence of a page's queries against several pages' passages gives each page's own decision cheaply."""
        rows = np.asarray(indices, dtype=np.intp)
        view = object.__new__(Evidence)
        view.__dict__.update(self.__dict__)
        view.passages = [self.passages[i] for i in rows]
        view._p = self._p[rows]
        view._passage_words = self._passage_words[:, rows].tocsc()
        return view

    def _has_words(self) -> np.ndarray:
        return np.diff(self._words.indptr) > 0

    def block(self, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(semantic, semantic_full, lexical) of the query rows against every passage."""
        semantic = self._qs[rows] @ self._p.T
        semantic_full = self._q[rows] @ self._p.T
        lexical = np.asarray((self._words[rows] @ self._passage_words).todense(), dtype=np.float32)
        # A query with no word of its own beyond the subject asks about the subject: the page has it.
        lexical[~self._has_words()[rows]] = 1.0
        return semantic, semantic_full, lexical

    def query_links(self, neighbors: int = NEIGHBORS) -> sparse.csr_matrix:
        """The queries' link graph (pageperfect.analysis.intents.link_graph), as the grouping builds it; built once."""
        if neighbors not in self._links:
            self._links[neighbors] = link_graph(self.queries, self._q, self._qs, self.subject, neighbors=neighbors)
        return self._links[neighbors]

    def per_query(self) -> QueryEvidence:
        n = len(self.queries)
        best = [np.zeros(n, dtype=np.float32) for _ in range(3)]
        if len(self.passages):
            step = max(1, BLOCK_CELLS // len(self.passages))
            for start in range(0, n, step):
                rows = slice(start, min(n, start + step))
                for out, values in zip(best, self.block(rows)):
                    out[rows] = values.max(axis=1)
        else:
            best[2][~self._has_words()] = 0.0
        semantic, semantic_full, lexical = best
        return QueryEvidence(semantic, semantic_full, lexical, self.model.logit(semantic, semantic_full, lexical))

    def passages_for(self, members: Sequence[int], top_k: int = 3) -> list[dict]:
        """The passages that best answer these queries (by the mean of the logit's passage terms), with their
        scores, best first."""
        if not self.passages or not len(members):
            return []
        rows = np.asarray(members)
        semantic, semantic_full, lexical = (v.mean(axis=0) for v in self._rows_block(rows))
        m = self.model
        combined = m.semantic * semantic + m.semantic_full * semantic_full + m.lexical * lexical
        order = np.argsort(-combined, kind="stable")
        out, seen = [], set()
        for j in order:
            p = self.passages[j]
            if (p.segment_id, p.text) in seen:
                continue
            seen.add((p.segment_id, p.text))
            out.append(
                {
                    "segment_id": p.segment_id,
                    "heading_path": p.heading_path,
                    "text": p.text,
                    "kind": p.kind,
                    "semantic": round(float(semantic[j]), 4),
                    "semantic_full": round(float(semantic_full[j]), 4),
                    "lexical": round(float(lexical[j]), 4),
                }
            )
            if len(out) == top_k:
                break
        return out

    def _rows_block(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        semantic = self._qs[rows] @ self._p.T
        semantic_full = self._q[rows] @ self._p.T
        lexical = np.asarray((self._words[rows] @ self._passage_words).todense(), dtype=np.float32)
        lexical[~self._has_words()[rows]] = 1.0
        return semantic, semantic_full, lexical

    def words_for(self, members: Sequence[int], passage: dict | None) -> dict[str, list[str]]:
        """The cluster's distinctive words (as its queries spell them), split by whether `passage` has them."""
        stems: dict[str, str] = {}
        for i in members:
            for word in re.findall(r"[^\W_]+(?:['’][^\W_]+)?", self.queries[i].lower()):
                for s in content_stems(word):
                    if s not in self.subject:
                        stems.setdefault(s, word)
        if passage is None:
            return {"found": [], "missing": list(stems.values())}
        match = next(
            (p for p in self.passages if p.segment_id == passage["segment_id"] and p.text == passage["text"]), None
        )
        words_text = match.words_text if match else " ".join([*passage["heading_path"], passage["text"]])
        have = passage_stems(words_text)
        return {
            "found": [w for s, w in stems.items() if s in have],
            "missing": [w for s, w in stems.items() if s not in have],
        }


def passage_stems(text: str) -> set[str]:
    """The stems a passage offers a query's words: its content words', and each pair of adjacent words joined,
    so that a compound written open ("peep hole", "check in") meets the query's closed form ("peephole",
    "checkin"). Joined pairs that are no word ("thehotel") meet no query word and cost nothing."""
    words = text_words(text)
    return set(content_stems(text)) | {light_stem(a + b) for a, b in zip(words, words[1:])}


def sigmoid(x: float) -> float:
    if x < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class Decision:
    """One cluster's (or one part of a split cluster's) verdict."""

    members: list[int]  # query rows
    logit: float
    coverage: float
    has_gap: bool
    split_from: int | None = None  # the cluster this part was split from
    evidence: dict = field(default_factory=dict)


def _linked_within(links: sparse.csr_matrix, rows: np.ndarray) -> bool:
    """Whether at least two of these queries are linked to each other."""
    return len(rows) > 1 and links[rows][:, rows].nnz > 0


def decide(
    clusters: Sequence[Sequence[int]],
    weights: np.ndarray,
    evidence: QueryEvidence,
    model: CoverageModel,
    links: Callable[[], sparse.csr_matrix] | None = None,
) -> list[list[Decision]]:
    """Per cluster (lists of query rows), one decision, or two when its queries clearly disagree.

    With model.split_needs_links, `links` must be given: it returns the queries' link graph
    (Evidence.query_links), called once and only when some cluster's queries disagree. A cluster is then
    split only when each part has a link among its own queries; otherwise it stays whole, and the queries
    on the other side of the boundary from its verdict are named in its evidence."""
    if model.split_needs_links and links is None:
        raise ValueError("split_needs_links: pass the queries' link graph (Evidence.query_links)")
    graph: sparse.csr_matrix | None = None  # built on the first disagreement
    out: list[list[Decision]] = []
    for number, members in enumerate(clusters):
        rows = np.asarray(members, dtype=np.intp)
        logits = evidence.logit[rows]
        boundary = model.boundary
        clear_yes = logits >= boundary + model.split_margin
        clear_no = logits <= boundary - model.split_margin
        if len(rows) > 1 and clear_yes.any() and clear_no.any():
            side = logits >= boundary
            parts = [rows[side], rows[~side]]
            linked = True
            if model.split_needs_links and links is not None:
                graph = links() if graph is None else graph
                linked = all(_linked_within(graph, p) for p in parts)
            if linked:
                out.append([_decision(p, weights, evidence, model, split_from=number) for p in parts])
                continue
            whole = _decision(rows, weights, evidence, model)
            others = rows[side] if whole.has_gap else rows[~side]
            whole.evidence["not_split"] = others.tolist()
            out.append([whole])
            continue
        out.append([_decision(rows, weights, evidence, model)])
    return out


def _decision(
    rows: np.ndarray, weights: np.ndarray, evidence: QueryEvidence, model: CoverageModel, split_from: int | None = None
) -> Decision:
    w = weights[rows].astype(np.float64)
    logit = float((evidence.logit[rows] * w).sum() / w.sum()) if w.sum() > 0 else float(evidence.logit[rows].mean())
    coverage = sigmoid(logit)
    return Decision(
        members=rows.tolist(), logit=logit, coverage=coverage, has_gap=coverage < model.threshold, split_from=split_from
    )
