"""segment_embed: main content into headed segments, each embedded and stored."""

from __future__ import annotations

from temporalio import activity

from activities.common import artifact_from, fingerprint, heartbeating, permanent, reuse_or_run, run_cpu
from activities.runtime import resources
from db import queries
from pageperfect.analysis.embeddings import embed_with_cache
from pageperfect.models import StageInput, StageSummary
from pageperfect.analysis.segment import NoContent, extract_page, segment_text_for_embedding

EXTRACTOR_VERSION = "segment-v1"


@activity.defn(name="segment_embed")
async def segment_embed(inp: StageInput) -> StageSummary:
    res = resources()
    crawl_id = await artifact_from(inp, "wait_crawl")
    embedder = res.embedder

    async def run() -> StageSummary:
        crawl = await queries.get_crawl(res.pool, crawl_id)
        if crawl is None or crawl["status"] != "fetched":
            raise permanent("MissingInput", f"crawl {crawl_id} has no fetched page")
        try:
            page = await run_cpu(extract_page, crawl["html"] or "", crawl["final_url"] or inp.job.url)
        except NoContent as err:
            raise permanent("NoContent", str(err)) from err
        texts = [segment_text_for_embedding(s) for s in page.segments]
        embeddings, stats = await heartbeating(embed_with_cache(embedder, texts, res.embedding_cache))
        activity.heartbeat()
        set_id = await queries.insert_segment_set(
            res.pool,
            page_id=inp.job.page_id,
            crawl_id=crawl_id,
            job_id=inp.job.job_id,
            page=page,
            provider=embedder.name,
            model=embedder.model,
            embeddings=embeddings,
        )
        await queries.update_page_meta(res.pool, inp.job.page_id, page.title, page.meta_description)
        return StageSummary(
            stage="segment_embed",
            artifact_id=set_id,
            counts={"segments": len(page.segments), **{f"embed_{k}": v for k, v in stats.items()}},
            info={
                "extractor": page.extractor,
                "embedding_provider": embedder.name,
                "embedding_model": embedder.model,
                "truncated": bool(getattr(page, "truncated", False)),
            },
        )

    key = fingerprint(EXTRACTOR_VERSION, crawl_id, embedder.name, embedder.model)
    return await reuse_or_run(inp, "segment_embed", key, run)
