"""Embedding cost: requests and input tokens for one job's texts, batched and cached vs one request per text.

Against the OpenAI-compatible stub on loopback (tests/openai_server.py), which
answers like the real endpoint and counts what it receives. A job here is 200
page segments and 1,000 search queries; the old system sent one request per
text and kept nothing.
"""

from __future__ import annotations

import random
import time

from bench.common import figure, ratio, title
from bench.fixtures import COVERED, FILLER, keyword_rows

NAME = "embedding_cost"
NEEDS_STACK = False
SEGMENTS = 200
QUERIES = 1000
DIM = 1536  # text-embedding-3-small's width: responses as large as the real ones
REQUEST_RATIO_TARGET = 50


def segment_texts(count: int, seed: int = 0) -> list[str]:
    """Segment texts as segment_embed sends them: innermost heading, then the paragraph."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        heading, vocabulary = COVERED[i % len(COVERED)]
        words = vocabulary.split() * 3 + FILLER
        texts.append(f"{heading}: " + " ".join(rng.choice(words) for _ in range(rng.randint(30, 90))) + f" ({i})")
    return texts


async def run(quick: bool, stack: object = None) -> None:
    from pageperfect.analysis.embeddings import MemoryEmbeddingCache, OpenAIEmbedder, embed_with_cache
    from tests.openai_server import OpenAIStub

    segments = segment_texts(SEGMENTS)
    queries = [row["query"] for row in keyword_rows(QUERIES)]
    title(f"embedding cost: one job of {SEGMENTS} segments and {QUERIES:,} queries, stub at {DIM} dims")
    with OpenAIStub(dim=DIM) as stub:
        # The stub writes headers and body separately; with Nagle on, each answer waits out the
        # client's delayed ACK (~40 ms), which would time the loopback, not the request pattern.
        stub._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[union-attr]
        cache = MemoryEmbeddingCache()
        runs = {}
        for label in ("first job", "same texts again"):
            embedder = OpenAIEmbedder(api_key="bench", base_url=stub.base_url)
            stub.reset_counts()
            started = time.perf_counter()
            await embed_with_cache(embedder, segments, cache)
            await embed_with_cache(embedder, queries, cache)
            runs[label] = (
                stub.requests["embeddings"],
                stub.inputs["embeddings"],
                embedder.input_tokens,
                time.perf_counter() - started,
            )
            await embedder.close()

        # The old system: one request per text, one at a time, nothing kept. --quick times a
        # quarter of the texts and scales the counts (one request per text is linear by definition).
        texts = segments + queries
        sample = texts[::4] if quick else texts
        scale = len(texts) / len(sample)
        embedder = OpenAIEmbedder(api_key="bench", base_url=stub.base_url, batch_size=1, concurrency=1)
        stub.reset_counts()
        started = time.perf_counter()
        for text in sample:
            await embedder.embed([text])
        old = (
            round(stub.requests["embeddings"] * scale),
            round(stub.inputs["embeddings"] * scale),
            round(embedder.input_tokens * scale),
            (time.perf_counter() - started) * scale,
        )
        await embedder.close()

    old_label = "one request per text" + (" (1/4 sample, scaled)" if quick else "")
    for label, (requests, inputs, tokens, seconds) in [(old_label, old), *runs.items()]:
        figure(
            f"{label:<40}",
            f"{requests:5d} requests, {inputs:5d} inputs, {tokens:7,d} input tokens, {seconds * 1000:8.0f} ms",
        )
    first, second = runs["first job"], runs["same texts again"]
    fewer = old[0] / first[0] if first[0] else float("inf")
    ratio("embedding_cost.repeat_job_requests", second[0], "0 requests with the same cache", second[0] == 0)
    ratio(
        "embedding_cost.fewer_requests",
        fewer,
        f">= {REQUEST_RATIO_TARGET}x fewer than one per text",
        fewer >= REQUEST_RATIO_TARGET,
    )
