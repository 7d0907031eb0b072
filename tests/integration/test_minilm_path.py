"""The offline semantic embedder through the real Postgres embedding cache and a whole job."""

from __future__ import annotations

import uuid

import numpy as np

from db.queries import PostgresEmbeddingCache
from pageperfect.analysis.embeddings import embed_with_cache
from pageperfect.analysis.minilm import MiniLMEmbedder
from tests.integration.test_pipeline import demo_keywords


async def test_a_second_run_is_answered_by_the_postgres_cache(pool):
    tag = uuid.uuid4().hex[:8]  # texts of their own: the session's cache has not seen them
    texts = [
        f"is fiddle leaf fig toxic to cats {tag}",
        f"fiddle leaf fig brown spots {tag}",
        f"Watering: water when the top two inches of soil are dry ({tag}).",
        f"is fiddle leaf fig toxic to cats {tag}",
    ]
    cache = PostgresEmbeddingCache(pool)

    first = MiniLMEmbedder()
    vectors, stats = await embed_with_cache(first, texts, cache)
    assert stats == {"cached": 0, "embedded": 3, "requests": 1}  # the repeated text is embedded once
    assert first.requests == 1 and first.texts_embedded == 3

    second = MiniLMEmbedder()  # another worker process would start like this: nothing counted yet
    again, stats = await embed_with_cache(second, texts, cache)
    assert stats == {"cached": 3, "embedded": 0, "requests": 0}
    assert second.requests == 0 and second.texts_embedded == 0
    assert np.abs(again - vectors).max() < 1e-6
    rows = await pool.fetch("SELECT DISTINCT provider, model FROM embedding_cache WHERE provider = 'minilm'")
    assert [(r["provider"], r["model"]) for r in rows] == [("minilm", MiniLMEmbedder.model)]


async def test_a_job_on_the_offline_semantic_embedder(pipeline_factory, site):
    pipeline = await pipeline_factory(embedding_provider="minilm")
    url = site.add("/minilm-path.html", site.handler.routes["/index.html"][2])
    keywords = demo_keywords()
    _, result = await pipeline.completed_result(url=url, keywords=keywords)
    assert result["providers"]["embedding"] == {"provider": "minilm", "model": MiniLMEmbedder.model}
    assert result["providers"]["offline"] is True
    assert "all-MiniLM-L6-v2" in result["providers"]["note"] and "hashing" not in result["providers"]["note"]
    assert result["stats"]["clusters"] >= 1

    # The unchanged page again, every stage forced to run: the cache answers, the model does not run.
    again = await pipeline.submit(url=url, keywords=keywords, force_update=True)
    job = await pipeline.wait(again["job_id"])
    assert job["status"] == "completed" and not any(s["reused"] for s in job["stages"])
    stages = (await pipeline.http.get(f"/v1/jobs/{again['job_id']}/result")).json()["stages"]
    for stage in ("segment_embed", "keyword_clustering"):
        counts = stages[stage]["counts"]
        assert counts["embed_requests"] == 0 and counts["embed_embedded"] == 0 and counts["embed_cached"] > 0, counts
