"""keyword_clustering: the page's queries embedded and grouped into search intents (or with DBSCAN).

Long or prompt-like queries (pageperfect/analysis/long_queries.py) are counted and stored whole on the
cluster set but left out of the clusters, unless the job sets `include_long_queries`; clustered, they are
embedded from their first words.
"""

from __future__ import annotations

from temporalio import activity

from activities.common import fingerprint, heartbeating, reuse_or_run, run_cpu
from activities.runtime import resources
from db import queries
from pageperfect.analysis.defaults import defaults_for
from pageperfect.analysis.embeddings import embed_with_cache
from pageperfect.analysis.intents import group_queries, grouped_share, strip_subject, subject_stems
from pageperfect.analysis.long_queries import embedding_text, split_long
from pageperfect.models import StageInput, StageSummary
from pageperfect.sources.gsc import apply_filters


@activity.defn(name="keyword_clustering")
async def keyword_clustering(inp: StageInput) -> StageSummary:
    res = resources()
    job, embedder = inp.job, res.embedder
    options = job.options
    defaults = defaults_for(embedder.name)
    method = options.method or defaults.method
    eps = options.eps if options.eps is not None else defaults.eps
    min_samples = options.min_samples if options.min_samples is not None else defaults.min_samples
    neighbors = options.neighbors if options.neighbors is not None else defaults.neighbors
    resolution = options.resolution if options.resolution is not None else defaults.resolution
    params = (
        {"eps": eps, "min_samples": min_samples}
        if method == "dbscan"
        else {"neighbors": neighbors, "resolution": resolution}
    )
    content_hash = None
    if job.keyword_set_id is not None:
        content_hash = await queries.keyword_set_hash(res.pool, job.keyword_set_id)

    async def run() -> StageSummary:
        rows = []
        if job.keyword_set_id is not None:
            _, rows = await queries.get_keyword_set(res.pool, job.keyword_set_id)
        rows = apply_filters(rows, options.filters)
        ordinary, long_rows = split_long(rows)
        if not options.include_long_queries:
            rows = ordinary
        clusters = []
        stats: dict = {}
        subject: frozenset[str] = frozenset()
        if rows:
            texts = [embedding_text(r.query) for r in rows]
            stripped = None
            if method == "intents":
                subject = subject_stems(texts)
                texts = texts + [strip_subject(q, subject) for q in texts]
            embeddings, stats = await heartbeating(embed_with_cache(embedder, texts, res.embedding_cache))
            vectors = embeddings[: len(rows)]
            if method == "intents":
                stripped = embeddings[len(rows) :]
            clusters = await run_cpu(
                group_queries,
                rows,
                vectors,
                stripped,
                subject,
                method=method,
                eps=eps,
                min_samples=min_samples,
                neighbors=neighbors,
                resolution=resolution,
            )
        set_id = await queries.insert_cluster_set(
            res.pool,
            page_id=job.page_id,
            keyword_set_id=job.keyword_set_id,
            job_id=job.job_id,
            provider=embedder.name,
            model=embedder.model,
            eps=eps,
            min_samples=min_samples,
            keyword_count=len(rows),
            clusters=clusters,
            method=method,
            params=params,
            subject=subject,
            long_queries=[r.query for r in long_rows],
            long_queries_included=options.include_long_queries,
        )
        return StageSummary(
            stage="keyword_clustering",
            artifact_id=set_id,
            counts={
                "keywords": len(rows),
                "clusters": len(clusters),
                "singletons": sum(1 for c in clusters if c.size == 1),
                "grouped_share": round(grouped_share(clusters), 4),
                "long_queries": len(long_rows),
                **{f"embed_{k}": v for k, v in stats.items()},
            },
            info={
                "method": method,
                **params,
                "embedding_provider": embedder.name,
                "include_long_queries": options.include_long_queries,
            },
        )

    key = fingerprint(
        content_hash,
        options.filters.model_dump(),
        method,
        params,
        embedder.name,
        embedder.model,
        options.include_long_queries,
    )
    return await reuse_or_run(inp, "keyword_clustering", key, run)
