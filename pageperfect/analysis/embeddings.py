"""Text embeddings: an offline lexical embedder, an OpenAI client, and a cache in front of them.

The offline semantic embedder (all-MiniLM-L6-v2 on numpy) is in pageperfect/analysis/minilm.py.

Every provider returns float32 rows of unit length, so a dot product is a cosine.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import math
import random
import re
import unicodedata
from typing import Any, Protocol

import numpy as np
from pageperfect.sources.retry_after import retry_after_seconds

log = logging.getLogger(__name__)


class EmbeddingProvider(Protocol):
    name: str
    model: str
    dim: int

    async def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim) with L2-normalized rows."""
        ...


class EmbeddingError(RuntimeError):
    """An embedding request that could not be completed."""


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


# --------------------------------------------------------------------------- hashing


_WORD_RE = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_VOWEL_RE = re.compile(r"[aeiouy]")
_DOUBLE_CONSONANT_RE = re.compile(r"([bdfgkmnprtz])\1$")


@functools.lru_cache(maxsize=2**16)  # a page's words repeat across its segments, queries and stages
def light_stem(word: str) -> str:
    """A small suffix stripper, so word forms meet: repotting/repotted/repots -> repot.

    Deliberately crude, in the spirit of Porter's first steps: it only has to map
    the forms of a word to one key; the keys need not be real words.
    """
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith(("ies", "ied")) and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ings") or word.endswith("ing") or (word.endswith("ed") and not word.endswith("eed")):
        cut = 4 if word.endswith("ings") else 3 if word.endswith("ing") else 2
        stem = word[:-cut]
        if len(stem) >= 3 and _VOWEL_RE.search(stem):  # "spring" and "bred" stay whole
            word = _DOUBLE_CONSONANT_RE.sub(r"\1", stem)
    elif word.endswith(("ation", "ations")):
        word = word[: word.rindex("ation")] + "at"  # hydration -> hydrat, like hydrate
    elif word.endswith(("ment", "ments", "ness")) and len(word) > 7:
        word = word[: -5 if word.endswith("ments") else -4]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]  # shape/shapes/shaping -> shap, boxes -> box
    return word


def _normalize_for_hashing(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


@functools.cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def text_words(text: str) -> list[str]:
    """The text's words in order, lower-cased, stop words kept."""
    return _WORD_RE.findall(_normalize_for_hashing(text))


def _content_words(text: str) -> list[str]:
    stop = _stop_words()
    return [w for w in text_words(text) if w not in stop]


def content_stems(text: str) -> list[str]:
    """The text's words, lower-cased, English stop words dropped, each reduced by light_stem."""
    return [light_stem(w) for w in _content_words(text)]


def _word_features(text: str) -> list[str]:
    stems = content_stems(text)
    bigrams = [f"{a} {b}" for a, b in zip(stems, stems[1:])]
    return stems + bigrams


@functools.lru_cache(maxsize=2**16)
def _stem_grams(stem: str) -> tuple[str, ...]:
    padded = f" {stem} "
    return tuple(padded[i : i + n] for n in (3, 4, 5) for i in range(len(padded) - n + 1))


def _char_features(text: str) -> list[str]:
    # char_wb-style n-grams of the stemmed content words: spelling variants and
    # compounds still share most of their n-grams.
    grams: list[str] = []
    for stem in content_stems(text):
        grams.extend(_stem_grams(stem))
    return grams


class HashingEmbedder:
    """Offline, deterministic lexical embeddings (the default provider).

    Two scikit-learn HashingVectorizers (MurmurHash3, so the same text gives the
    same vector in every process): stemmed content words and their bigrams, and
    character 3-5-grams of the stemmed words. English stop words are dropped,
    term counts are damped (binary), each part is L2-normalized, the two are
    weighted and concatenated, and the whole row is L2-normalized again.
    It knows words, not meanings: "cat" and "kitten" are unrelated to it.
    """

    name = "hashing"

    def __init__(self, n_features: int = 2**10, word_weight: float = 0.5) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        if not 0 <= word_weight <= 1:
            raise ValueError("word_weight must be within [0, 1]")
        # The model name keys the embedding cache: bump the version whenever the features change.
        self.model = f"hashing-v1-{n_features}-w{word_weight:g}"
        self.dim = 2 * n_features
        self.word_weight = word_weight
        common: dict[str, Any] = dict(
            n_features=n_features, binary=True, norm="l2", alternate_sign=True, dtype=np.float32
        )
        self._words = HashingVectorizer(analyzer=_word_features, **common)
        self._chars = HashingVectorizer(analyzer=_char_features, **common)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        from scipy import sparse

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        words = self._words.transform(texts) * math.sqrt(self.word_weight)
        chars = self._chars.transform(texts) * math.sqrt(1 - self.word_weight)
        matrix = sparse.hstack([words, chars], format="csr").toarray()
        return _normalize_rows(matrix)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, list(texts))


# --------------------------------------------------------------------------- tokens

MAX_INPUT_TOKENS = 8191
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000

# The fallback splits text into letter runs, digit runs, single other characters and
# whitespace. It is only used when tiktoken and its encoding file are unavailable.
_PIECE_RE = re.compile(r"[A-Za-z]+|[0-9]+|\s+|[^\sA-Za-z0-9]")


@functools.cache
def _tiktoken_encoding(model: str) -> Any | None:
    """tiktoken's encoding for the model, or None when the package or its encoding file cannot be loaded."""
    try:
        import tiktoken
    except ImportError:
        return None
    try:
        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            return tiktoken.get_encoding("cl100k_base")
    except Exception as exc:  # the encoding file is downloaded on first use; offline that fails
        log.info("tiktoken encoding unavailable (%s); using the conservative token estimate", exc)
        return None


def _estimate_piece_tokens(piece: str) -> int:
    """Tokens charged to one piece by the fallback estimate.

    Deliberately pessimistic so that truncated text stays under the model's limit
    (it counts about 1.5 times the real cl100k tokens of English prose): letter and
    digit runs count one token per 3 characters (cl100k averages about 4 characters
    per token on English words and splits digits in groups of 3), every other
    non-space character counts its UTF-8 bytes (byte-level BPE never needs more),
    a single space or newline counts nothing (BPE glues it to the next word) and a
    longer run of whitespace counts one.
    """
    first = piece[0]
    if first.isspace():
        return 0 if len(piece) == 1 else 1
    if first.isascii() and first.isalnum():
        return -(-len(piece) // 3)
    return len(piece.encode("utf-8"))


class TokenCounter:
    """Counts and truncates by tokens: tiktoken when its encoding loads, else a conservative estimate."""

    def __init__(self, model: str) -> None:
        self.encoding = _tiktoken_encoding(model)

    @property
    def exact(self) -> bool:
        return self.encoding is not None

    def count(self, text: str) -> int:
        if self.encoding is not None:
            return len(self.encoding.encode(text, disallowed_special=()))
        return sum(_estimate_piece_tokens(p) for p in _PIECE_RE.findall(text))

    def truncate(self, text: str, max_tokens: int = MAX_INPUT_TOKENS) -> tuple[str, int]:
        """The text cut to at most max_tokens tokens, and its token count."""
        if self.encoding is not None:
            tokens = self.encoding.encode(text, disallowed_special=())
            if len(tokens) <= max_tokens:
                return text, len(tokens)
            return self.encoding.decode(tokens[:max_tokens]), max_tokens
        total = 0
        for match in _PIECE_RE.finditer(text):
            cost = _estimate_piece_tokens(match.group())
            if total + cost > max_tokens:
                return text[: match.start()], total
            total += cost
        return text, total


# --------------------------------------------------------------------------- OpenAI

_RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx
_KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def _retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by retry-after-ms / Retry-After (seconds or an HTTP date), if any."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"))


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible /v1/embeddings endpoint.

    Inputs are cut to the model's token limit, packed into requests of at most
    batch_size inputs and MAX_TOKENS_PER_REQUEST tokens, and sent with at most
    `concurrency` requests in flight. 429, 5xx, timeouts and connection errors are
    retried with exponential backoff and full jitter (a Retry-After header wins
    when present), up to max_tries attempts per request; then EmbeddingError.
    `requests` and `input_tokens` count what was sent (retries included).
    """

    name = "openai"

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        model: str = "text-embedding-3-small",
        batch_size: int = 512,
        concurrency: int = 4,
        max_tries: int = 6,
        timeout: float = 60,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        import openai

        if not 1 <= batch_size <= MAX_INPUTS_PER_REQUEST:
            raise ValueError(f"batch_size must be within 1..{MAX_INPUTS_PER_REQUEST}")
        if concurrency < 1 or max_tries < 1:
            raise ValueError("concurrency and max_tries must be at least 1")
        self.model = model
        self.dim = _KNOWN_DIMS.get(model, 0)  # replaced by the width of the first response
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_tries = max_tries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.requests = 0
        self.input_tokens = 0
        self.tokens = TokenCounter(model)
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    async def close(self) -> None:
        await self._client.close()

    def _batches(self, texts: list[str]) -> list[tuple[list[int], list[str]]]:
        batches: list[tuple[list[int], list[str]]] = []
        indices: list[int] = []
        inputs: list[str] = []
        budget = 0
        for i, text in enumerate(texts):
            # The API rejects empty strings; a single space embeds as "nothing".
            cut, n_tokens = self.tokens.truncate(text or " ", MAX_INPUT_TOKENS)
            if inputs and (len(inputs) >= self.batch_size or budget + n_tokens > MAX_TOKENS_PER_REQUEST):
                batches.append((indices, inputs))
                indices, inputs, budget = [], [], 0
            indices.append(i)
            inputs.append(cut)
            budget += n_tokens
        if inputs:
            batches.append((indices, inputs))
        return batches

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    async def _request(self, inputs: list[str]) -> tuple[np.ndarray, int]:
        import openai

        last_error: Exception | None = None
        for attempt in range(self.max_tries):
            self.requests += 1
            try:
                response = await self._client.embeddings.create(model=self.model, input=inputs)
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRY_STATUSES and exc.status_code < 500:
                    raise EmbeddingError(
                        f"embedding request rejected by {self.model} endpoint: HTTP {exc.status_code}: {exc.message}"
                    ) from exc
                last_error, retry_after = exc, _retry_after_seconds(exc.response.headers)
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                last_error, retry_after = exc, None
            else:
                rows = sorted(response.data, key=lambda item: item.index)
                if len(rows) != len(inputs):
                    raise EmbeddingError(f"embedding response has {len(rows)} rows for {len(inputs)} inputs")
                matrix = np.asarray([row.embedding for row in rows], dtype=np.float32)
                used = response.usage.prompt_tokens if response.usage else 0
                return matrix, used
            if attempt + 1 < self.max_tries:
                delay = self._backoff(attempt, retry_after)
                log.warning("embedding request failed (%s); retry %d in %.1fs", last_error, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise EmbeddingError(
            f"embedding request failed after {self.max_tries} tries ({type(last_error).__name__}: {last_error})"
        ) from last_error

    async def embed(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = self._batches(texts)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def run(inputs: list[str]) -> np.ndarray:
            async with semaphore:
                matrix, used = await self._request(inputs)
            self.input_tokens += used
            return matrix

        results = await asyncio.gather(*(run(inputs) for _, inputs in batches))
        widths = {m.shape[1] for m in results}
        if len(widths) != 1:
            raise EmbeddingError(f"embedding responses disagree on dimensions: {sorted(widths)}")
        self.dim = widths.pop()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for (indices, _), matrix in zip(batches, results):
            out[indices] = matrix
        return _normalize_rows(out)


# --------------------------------------------------------------------------- choice

EMBEDDING_PROVIDERS = ("minilm", "hashing", "openai")


def make_embedder(
    name: str | None,
    *,
    api_key: str | None,
    base_url: str | None = None,
    model: str = "text-embedding-3-small",
    timeout: float = 60,
) -> EmbeddingProvider:
    """The embedder the settings name; None means openai with an API key, else minilm (offline)."""
    api_key = api_key.strip() if api_key and api_key.strip() else None
    if name is None:
        name = "openai" if api_key else "minilm"
    if name == "openai":
        if not api_key:
            raise ValueError("PAGEPERFECT_EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY")
        return OpenAIEmbedder(api_key=api_key, base_url=base_url, model=model, timeout=timeout)
    if name == "minilm":
        from pageperfect.analysis.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    if name == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedding provider {name!r}; known: {', '.join(EMBEDDING_PROVIDERS)}")


# --------------------------------------------------------------------------- cache


class EmbeddingCache(Protocol):
    async def get_many(self, provider: str, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]: ...

    async def put_many(self, provider: str, model: str, items: dict[str, np.ndarray]) -> None: ...


class MemoryEmbeddingCache:
    """An in-process EmbeddingCache, for tests and one-off runs."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str, str], np.ndarray] = {}

    async def get_many(self, provider: str, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for h in text_hashes:
            vector = self.store.get((provider, model, h))
            if vector is not None:
                found[h] = vector.copy()
        return found

    async def put_many(self, provider: str, model: str, items: dict[str, np.ndarray]) -> None:
        for h, vector in items.items():
            self.store[(provider, model, h)] = np.asarray(vector, dtype=np.float32).copy()


def normalize_text(text: str) -> str:
    """The form a text is embedded and cached in: NFC, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_hash(text: str) -> str:
    """sha256 hex of the normalized text: the cache key of its embedding."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


async def embed_with_cache(
    provider: EmbeddingProvider, texts: list[str], cache: EmbeddingCache | None
) -> tuple[np.ndarray, dict]:
    """Embeddings of texts in input order, fetching what the cache has and embedding each other text once.

    Returns the matrix and {"cached": n, "embedded": n, "requests": n}, counted over distinct texts.
    """
    hashes = [text_hash(t) for t in texts]
    distinct: dict[str, str] = {}
    for h, t in zip(hashes, texts):
        distinct.setdefault(h, normalize_text(t))
    found: dict[str, np.ndarray] = {}
    if cache is not None and distinct:
        found = await cache.get_many(provider.name, provider.model, list(distinct))
        if provider.dim:
            # A vector of another width was stored under an older setting: embed again.
            found = {h: v for h, v in found.items() if v.shape == (provider.dim,)}
    missing = [h for h in distinct if h not in found]
    requests_before = getattr(provider, "requests", 0)
    fresh: dict[str, np.ndarray] = {}
    if missing:
        matrix = await provider.embed([distinct[h] for h in missing])
        fresh = {h: matrix[i] for i, h in enumerate(missing)}
        if cache is not None:
            await cache.put_many(provider.name, provider.model, fresh)
    stats = {
        "cached": len(found),
        "embedded": len(fresh),
        "requests": getattr(provider, "requests", 0) - requests_before,
    }
    if not texts:
        return np.zeros((0, provider.dim), dtype=np.float32), stats
    vectors = {**found, **fresh}
    matrix = np.stack([np.asarray(vectors[h], dtype=np.float32) for h in hashes])
    return _normalize_rows(matrix), stats
