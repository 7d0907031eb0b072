import asyncio
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pageperfect.analysis.embeddings import (
    EMBEDDING_PROVIDERS,
    MAX_INPUT_TOKENS,
    MAX_TOKENS_PER_REQUEST,
    EmbeddingError,
    HashingEmbedder,
    MemoryEmbeddingCache,
    OpenAIEmbedder,
    TokenCounter,
    embed_with_cache,
    light_stem,
    text_hash,
)
from pageperfect.analysis.defaults import PROVIDER_DEFAULTS, defaults_for
from tests.openai_server import OpenAIStub

ROOT = Path(__file__).resolve().parents[2]
WORDS = "monstera sourdough starter water light soil repot leaves bread oven python venv activate install".split()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


@pytest.fixture
def stub():
    with OpenAIStub(dim=64) as server:
        yield server


_opened: list = []  # clients a test made: closed after it, so none is collected later inside a workflow's loop


@pytest.fixture(autouse=True)
async def _close_clients():
    yield
    while _opened:
        thing = _opened.pop()
        close = getattr(thing, "aclose", None) or getattr(thing, "close", None)
        if close is not None:
            await close()


def make_embedder(stub: OpenAIStub, **kwargs) -> OpenAIEmbedder:
    kwargs.setdefault("backoff_base", 0.01)
    embedder = OpenAIEmbedder("test-key", base_url=stub.base_url, **kwargs)
    _opened.append(embedder)
    return embedder


# --------------------------------------------------------------------------- hashing


async def test_hashing_rows_are_unit_float32():
    embedder = HashingEmbedder()
    matrix = await embedder.embed(["how to repot a monstera", "sourdough starter", "the of and"])
    assert matrix.dtype == np.float32
    assert matrix.shape == (3, embedder.dim)
    norms = np.linalg.norm(matrix, axis=1)
    assert np.allclose(norms[:2], 1.0, atol=1e-5)
    assert norms[2] == 0  # only stop words: nothing to say, and no NaN


async def test_hashing_is_deterministic_across_processes():
    texts = ["when to repot monstera", "sourdough discard recipes"]
    here = (await HashingEmbedder().embed(texts)).tobytes()
    code = (
        "import sys, hashlib; from pageperfect.analysis.embeddings import HashingEmbedder; "
        f"sys.stdout.write(hashlib.sha256(HashingEmbedder().embed_sync({texts!r}).tobytes()).hexdigest())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"},
    ).stdout
    import hashlib

    assert other == hashlib.sha256(here).hexdigest()


def test_light_stem_meets_word_forms():
    assert {light_stem(w) for w in ["repot", "repotting", "repotted", "repots"]} == {light_stem("repot")}
    assert light_stem("shaping") == light_stem("shape") == light_stem("shapes")
    assert light_stem("families") == light_stem("family")
    assert light_stem("spring") == "spring"  # not a verb form of "spr"


def test_hashing_tolerates_word_forms():
    embedder = HashingEmbedder()
    repotting, repot, watering, cat = embedder.embed_sync(["repotting", "repot", "watering", "cat"])
    assert cosine(repotting, repot) > 0.9
    assert cosine(repotting, repot) > cosine(repotting, watering) + 0.5
    assert cosine(repotting, cat) < 0.2
    a, b, c = embedder.embed_sync(["how to repot a monstera", "repotting monstera plants", "sourdough bread oven"])
    assert cosine(a, b) > cosine(a, c) + 0.3


async def test_hashing_does_not_block_the_event_loop():
    embedder = HashingEmbedder()
    texts = [f"query {i} about {WORDS[i % len(WORDS)]} and {WORDS[(i * 7) % len(WORDS)]}" for i in range(8000)]
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await embedder.embed(texts)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed > 0.1
    assert ticks >= 5


# --------------------------------------------------------------------------- OpenAI over HTTP


async def test_openai_batches_and_keeps_order(stub: OpenAIStub):
    embedder = make_embedder(stub, batch_size=128)
    texts = [f"query {i} {WORDS[i % len(WORDS)]}" for i in range(1000)]
    matrix = await embedder.embed(texts)
    assert stub.requests["embeddings"] == math.ceil(1000 / 128) == embedder.requests
    assert stub.inputs["embeddings"] == 1000
    assert embedder.dim == 64 and matrix.shape == (1000, 64)
    assert np.allclose(matrix, stub.embed(texts), atol=1e-5)
    assert embedder.input_tokens == sum(len(t.split()) for t in texts)
    assert set(stub.authorization) == {"Bearer test-key"}


async def test_openai_bounds_concurrency(stub: OpenAIStub):
    embedder = make_embedder(stub, batch_size=10, concurrency=2)
    stub.script_faults("embeddings", [{"hang": 0.2}] * 6)  # slow answers, so requests overlap
    await embedder.embed([f"text {i}" for i in range(60)])
    assert stub.requests["embeddings"] == 6
    assert stub.max_in_flight == 2


async def test_cache_second_run_makes_no_requests(stub: OpenAIStub):
    embedder = make_embedder(stub, batch_size=100)
    cache = MemoryEmbeddingCache()
    texts = [f"keyword {i}" for i in range(250)] + ["keyword 3", "keyword  3 "]  # duplicates
    first, stats = await embed_with_cache(embedder, texts, cache)
    assert stats == {"cached": 0, "embedded": 250, "requests": 3}
    assert stub.inputs["embeddings"] == 250
    second, stats = await embed_with_cache(embedder, texts, cache)
    assert stats == {"cached": 250, "embedded": 0, "requests": 0}
    assert stub.requests["embeddings"] == 3
    assert np.array_equal(first, second)
    assert np.array_equal(first[3], first[250]) and np.array_equal(first[3], first[251])
    partial, stats = await embed_with_cache(embedder, texts[:10] + ["new one"], cache)
    assert stats == {"cached": 10, "embedded": 1, "requests": 1}
    assert np.allclose(partial[-1], stub.embed(["new one"])[0], atol=1e-5)


async def test_cache_keys_by_provider_and_model():
    cache = MemoryEmbeddingCache()
    hashing = HashingEmbedder()
    await embed_with_cache(hashing, ["a query"], cache)
    other = HashingEmbedder(n_features=2**9)
    _, stats = await embed_with_cache(other, ["a query"], cache)
    assert stats["embedded"] == 1
    assert text_hash("a  query ") == text_hash("a query") != text_hash("a Query")


async def test_retries_429_and_500_then_succeeds(stub: OpenAIStub):
    embedder = make_embedder(stub, max_tries=4)
    stub.script_faults("embeddings", [{"status": 429, "retry_after": 1}, 500])
    started = time.perf_counter()
    matrix = await embedder.embed(["hello world"])
    elapsed = time.perf_counter() - started
    assert matrix.shape == (1, 64)
    assert stub.requests["embeddings"] == 3
    assert elapsed >= 1.0  # Retry-After honoured


async def test_retries_timeouts(stub: OpenAIStub):
    embedder = make_embedder(stub, timeout=0.3)
    stub.script_faults("embeddings", [{"hang": 2}])
    matrix = await embedder.embed(["hello world"])
    assert matrix.shape == (1, 64)
    assert embedder.requests == 2  # the first, hanging 2 s, was given up after 0.3 s and sent again


async def test_gives_up_after_max_tries(stub: OpenAIStub):
    embedder = make_embedder(stub, max_tries=3)
    stub.script_faults("embeddings", [503, 500, 429, 500])
    with pytest.raises(EmbeddingError, match="after 3 tries"):
        await embedder.embed(["hello world"])
    assert stub.requests["embeddings"] == 3


async def test_client_errors_are_not_retried(stub: OpenAIStub):
    embedder = make_embedder(stub, max_tries=5)
    stub.script_faults("embeddings", [401])
    with pytest.raises(EmbeddingError, match="HTTP 401"):
        await embedder.embed(["hello world"])
    assert stub.requests["embeddings"] == 1


async def test_truncates_long_input_by_tokens(stub: OpenAIStub):
    embedder = make_embedder(stub)
    long_text = " ".join(WORDS[i % len(WORDS)] for i in range(50_000))
    matrix = await embedder.embed([long_text, "short one"])
    assert matrix.shape == (2, 64)  # the stub refuses inputs over 8,191 words
    sent = stub.bodies["embeddings"][0]["input"][0]
    assert long_text.startswith(sent)
    assert TokenCounter(embedder.model).count(sent) <= MAX_INPUT_TOKENS
    assert len(sent.split()) > 3000  # cut by tokens, not to a sliver


async def test_requests_respect_token_budget(stub: OpenAIStub):
    embedder = make_embedder(stub, batch_size=512)
    counter = TokenCounter(embedder.model)
    long_text = " ".join(WORDS[i % len(WORDS)] for i in range(10_000))
    texts = [f"{i} {long_text}" for i in range(80)]
    assert counter.count(texts[0]) > MAX_INPUT_TOKENS  # every text is cut to the most one input may hold
    await embedder.embed(texts)
    per_request = [sum(counter.count(t) for t in body["input"]) for body in stub.bodies["embeddings"]]
    assert max(per_request) <= MAX_TOKENS_PER_REQUEST
    assert len(per_request) == math.ceil(80 / (MAX_TOKENS_PER_REQUEST // MAX_INPUT_TOKENS))


def test_fallback_token_estimate_is_conservative():
    counter = TokenCounter("text-embedding-3-small")
    if counter.exact:
        pytest.skip("tiktoken's encoding is available; the estimate is not used")
    assert counter.count("the cat sat on the mat") >= 6
    assert counter.count("1234567") == 3
    assert counter.count("日本") == 6  # UTF-8 bytes
    cut, n = counter.truncate("word " * 100, max_tokens=10)
    assert n <= 10 and counter.count(cut) <= 10 and cut


def test_provider_defaults():
    assert defaults_for("hashing") is PROVIDER_DEFAULTS["hashing"]
    assert defaults_for("hashing").similarity == "lexical"
    assert defaults_for("hashing").method == "dbscan"
    for semantic in ("minilm", "openai"):
        assert defaults_for(semantic).method == "intents"
        assert defaults_for(semantic).similarity == "evidence"
        assert defaults_for(semantic).coverage is not None
    with pytest.raises(ValueError, match="unknown embedding provider"):
        defaults_for("word2vec")
    assert set(PROVIDER_DEFAULTS) == set(EMBEDDING_PROVIDERS)


def test_the_setting_chooses_the_embedder(monkeypatch):
    from pydantic import ValidationError

    from activities.runtime import build_embedder, build_providers
    from pageperfect.analysis import embeddings
    from pageperfect.analysis.minilm import MiniLMEmbedder
    from pageperfect.settings import Settings

    def embedder(**values):
        providers = build_providers(Settings(_env_file=None, **{"openai_api_key": None, **values}))
        _opened.extend(p for p in providers if p is not None)
        return providers[1]

    monkeypatch.delenv("PAGEPERFECT_EMBEDDING_PROVIDER", raising=False)
    assert isinstance(embedder(), MiniLMEmbedder)  # unset: the local semantic model without a key
    assert isinstance(embedder(openai_api_key="k", openai_base_url="http://127.0.0.1:9/v1"), OpenAIEmbedder)
    assert isinstance(embedder(embedding_provider="minilm"), MiniLMEmbedder)
    assert isinstance(embedder(embedding_provider="minilm", openai_api_key="k"), MiniLMEmbedder)
    assert isinstance(embedder(embedding_provider="hashing", openai_api_key="k"), HashingEmbedder)
    monkeypatch.setenv("PAGEPERFECT_EMBEDDING_PROVIDER", "minilm")
    assert isinstance(embedder(), MiniLMEmbedder)
    with pytest.raises(ValueError, match="needs OPENAI_API_KEY"):
        embedder(embedding_provider="openai")
    monkeypatch.setenv("PAGEPERFECT_EMBEDDING_PROVIDER", "word2vec")
    with pytest.raises(ValidationError, match="PAGEPERFECT_EMBEDDING_PROVIDER"):
        Settings(_env_file=None)
    with pytest.raises(ValueError, match="unknown embedding provider 'word2vec'"):
        embeddings.make_embedder("word2vec", api_key=None)
    monkeypatch.delenv("PAGEPERFECT_EMBEDDING_PROVIDER")
    assert isinstance(build_embedder("minilm", Settings(_env_file=None, openai_api_key=None)), MiniLMEmbedder)


async def test_stub_answers_chat_and_models(stub: OpenAIStub):
    import openai

    client = openai.AsyncOpenAI(api_key="chat-key", base_url=stub.base_url, max_retries=0)
    reply = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Fix this"}],
    )
    assert reply.choices[0].message.content == "REWRITE: Fix this"
    models = await client.models.list()
    assert "text-embedding-3-small" in [m.id for m in models.data]
    stub.script_faults("chat/completions", [503])
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert stub.requests["chat/completions"] == 2 and stub.inputs["chat/completions"] == 1
    assert stub.authorization[-1] == "Bearer chat-key"
    await client.close()
