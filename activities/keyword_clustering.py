"""keyword_clustering: the page's queries embedded and grouped with DBSCAN."""

from __future__ import annotations

from temporalio import activity

from activities.common import fingerprint, heartbeating, reuse_or_run, run_cpu
from activities.runtime import resources
from db import queries
from pageperfect.analysis.clustering import cluster_keywords
from pageperfect.analysis.embeddings import defaults_for, embed_with_cache
from pageperfect.sources.gsc import apply_filters
from pageperfect.models import StageInput, StageSummary


@activity.defn(name="keyword_clustering")
async def keyword_clustering(inp: StageInput) -> StageSummary:
    res = resources()
    job, embedder = inp.job, res.embedder
    options = job.options
    defaults = defaults_for(embedder.name)
    eps = options.eps if options.eps is not None else defaults.eps
    min_samples = options.min_samples if options.min_samples is not None else defaults.min_samples
    content_hash = None
    if job.keyword_set_id is not None:
        content_hash = await queries.keyword_set_hash(res.pool, job.keyword_set_id)

    async def run() -> StageSummary:
        rows = []
        if job.keyword_set_id is not None:
            _, rows = await queries.get_keyword_set(res.pool, job.keyword_set_id)
        rows = apply_filters(rows, options.filters)
        clusters = []
        stats: dict = {}
        if rows:
            embeddings, stats = await heartbeating(embed_with_cache(embedder, [r.query for r in rows],
                                                                    res.embedding_cache))
            clusters = await run_cpu(cluster_keywords, rows, embeddings, eps=eps, min_samples=min_samples)
        set_id = await queries.insert_cluster_set(
            res.pool, page_id=job.page_id, keyword_set_id=job.keyword_set_id, job_id=job.job_id,
            provider=embedder.name, model=embedder.model, eps=eps, min_samples=min_samples,
            keyword_count=len(rows), clusters=clusters,
        )
        return StageSummary(
            stage="keyword_clustering", artifact_id=set_id,
            counts={"keywords": len(rows), "clusters": len(clusters),
                    "singletons": sum(1 for c in clusters if c.size == 1),
                    **{f"embed_{k}": v for k, v in stats.items()}},
            info={"eps": eps, "min_samples": min_samples, "embedding_provider": embedder.name},
        )

    key = fingerprint(content_hash, options.filters.model_dump(), eps, min_samples, embedder.name, embedder.model)
    return await reuse_or_run(inp, "keyword_clustering", key, run)
