"""The OpenAI-compatible path over real HTTP: batched embeddings, the cache, and LLM drafts."""

from __future__ import annotations

import uuid

from tests.helpers.data import demo_keywords
from tests.openai_server import OpenAIStub


async def test_batched_embeddings_cache_and_drafts(pipeline_factory, site, pool):
    with OpenAIStub() as stub:
        # A model name of its own: the session's embedding cache must not answer for other tests' jobs.
        model = f"text-embedding-3-small-{uuid.uuid4().hex[:8]}"
        pipeline = await pipeline_factory(
            openai_api_key="sk-test-openai-path", openai_base_url=stub.base_url, embedding_model=model
        )
        url = site.add("/openai-path.html", site.handler.routes["/index.html"][2])
        keywords = demo_keywords()
        _, result = await pipeline.completed_result(url=url, keywords=keywords)
        embedded = stub.inputs["embeddings"]
        # Every segment and query went in a handful of requests, not one request per item.
        assert embedded >= result["stats"]["segments"] + len(keywords) - 5
        assert stub.requests["embeddings"] <= 4
        assert result["providers"]["embedding"] == {"provider": "openai", "model": model}
        assert result["providers"]["offline"] is False
        drafts = result["drafts"]
        assert drafts and all(d["kind"] == "draft" and d["model"] == "gpt-4o-mini" for d in drafts)
        # The judge asked about the clusters nearest the threshold; the stub's answer is not the JSON it asks for,
        # so the embedding decision stands and the result says so.
        judged = result["stages"]["gap_analysis"]["counts"]
        assert judged["judge_asked"] >= 1 and judged["judge_unusable"] == judged["judge_asked"]
        notes = [g["explanation"]["judge"] for g in result["gaps"] if "judge" in (g["explanation"] or {})]
        assert len(notes) == judged["judge_asked"]
        assert all(n["status"] == "malformed" and "embedding decision stands" in n["note"] for n in notes)
        assert all(g["decided_by"] == "evidence" for g in result["gaps"])
        assert stub.requests["chat/completions"] == len(drafts) + judged["judge_asked"]
        assert all(d["diff"].startswith("---") for d in drafts)
        assert all(a == "Bearer sk-test-openai-path" for a in stub.authorization)

        # The unchanged page again, forced to run every stage: the cache answers, nothing is sent.
        before = stub.requests["embeddings"]
        again = await pipeline.submit(url=url, keywords=keywords, force_update=True)
        job = await pipeline.wait(again["job_id"])
        assert job["status"] == "completed" and not any(s["reused"] for s in job["stages"])
        assert stub.requests["embeddings"] == before
        counts = {s["stage"]: s for s in (job.get("stages") or [])}
        assert counts["segment_embed"]["status"] == "completed"
