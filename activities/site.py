"""The site's activities: the site stage over its page jobs' stored results, and its ending."""

from __future__ import annotations


import numpy as np
from temporalio import activity

from activities.common import heartbeating, permanent, run_cpu, stored_segments
from activities.runtime import resources
from db import queries
from pageperfect.analysis.coverage import passages_of
from pageperfect.analysis.defaults import defaults_for
from pageperfect.analysis.embeddings import embed_with_cache
from pageperfect.analysis.intents import strip_subject
from pageperfect.analysis.long_queries import embedding_text
from pageperfect.analysis.site import SitePage, analyze_site, site_page
from pageperfect.messages import FinalizeSite, SiteStageInput
from pageperfect.models import JobStatus, KeywordRow
from pageperfect.services.results import artifact_ids

MIN_PAGES = 2


async def load_site_page(pool, embedder, cache, job, model) -> SitePage | str:
    """A completed job's stored results as a SitePage, or why it cannot be one."""
    ids = await artifact_ids(pool, job)
    segment_set_id, cluster_set_id, report_id = ids["segment_sets"], ids["cluster_sets"], ids["gap_reports"]
    if not (segment_set_id and cluster_set_id and report_id):
        return "the job stored no segments, clusters or gap report"
    segment_set = await queries.get_segment_set(pool, segment_set_id)
    cluster_set = await queries.get_cluster_set(pool, cluster_set_id)
    report = await queries.get_gap_report(pool, report_id)
    if segment_set is None or cluster_set is None or report is None:
        return "the job's results are no longer stored (pruned?)"
    if (segment_set["embedding_provider"], segment_set["embedding_model"]) != (embedder.name, embedder.model):
        return (
            f"its segments were embedded with {segment_set['embedding_provider']}/"
            f"{segment_set['embedding_model']}, the site stage embeds with {embedder.name}/{embedder.model}"
        )
    subject = frozenset(cluster_set["subject"] or [])
    by_query: dict[str, KeywordRow] = {}
    if cluster_set["keyword_set_id"] is not None:
        _, stored = await queries.get_keyword_set(pool, cluster_set["keyword_set_id"])
        by_query = {r.query: r for r in stored}
    gaps = await queries.get_gaps(pool, report_id)
    texts = list(dict.fromkeys(q for g in gaps for q in g["keywords"]))
    rows = [
        by_query.get(q) or KeywordRow.model_construct(query=q, clicks=0, impressions=0, ctr=0, position=1)
        for q in texts
    ]
    segments, matrix = await stored_segments(pool, segment_set_id)
    passages = passages_of(segments, model.passages)
    sentences = [p.embed_text for p in passages if p.kind != "segment"]  # sentences and windows
    # The same texts the page's own analysis (activities/gap_analysis.py) embedded: read back from the cache.
    embed_texts = [embedding_text(q) for q in texts]
    wanted = embed_texts + [strip_subject(q, subject) for q in embed_texts] + sentences
    vectors, _ = await embed_with_cache(embedder, wanted, cache)
    n = len(texts)
    segment_vector = {s.segment_id: v for s, v in zip(segments, matrix)}
    sentence_vectors = iter(vectors[2 * n :])
    passage_vectors = (
        np.stack([segment_vector[p.segment_id] if p.kind == "segment" else next(sentence_vectors) for p in passages])
        if passages
        else np.zeros((0, vectors.shape[1]), np.float32)
    )
    return site_page(
        job["url"],
        str(job["job_id"]),
        rows,
        vectors[:n],
        vectors[n : 2 * n],
        subject,
        gaps,
        passages,
        passage_vectors,
        report["coverage_score"],
    )


@activity.defn(name="site_analysis")
async def site_analysis(req: SiteStageInput) -> dict:
    """Reads the site's completed page jobs from Postgres, finds the cases and the links, stores them."""
    res = resources()
    pool = res.pool
    site = await queries.get_site(pool, req.site_id)
    if site is None:
        raise permanent("NotFound", f"no site {req.site_id}")
    await queries.set_site_stage(pool, req.site_id, "site_analysis")
    defaults = defaults_for(res.embedder.name)
    model = defaults.coverage
    if model is None:
        raise permanent(
            "BadInput",
            f"the site analysis decides coverage from evidence, which the "
            f"{res.embedder.name} embedder has no weights for: use minilm or openai",
        )
    pages: list[SitePage] = []
    skipped: dict[str, str] = {}
    for job in await queries.site_jobs(pool, req.site_id):
        if job["job_id"] is None or job["status"] != JobStatus.COMPLETED:
            skipped[job["url"]] = f"its job is {job['status'] or 'not made'}"
            continue
        loaded = await heartbeating(load_site_page(pool, res.embedder, res.embedding_cache, job, model))
        if isinstance(loaded, str):
            skipped[job["url"]] = loaded
        else:
            pages.append(loaded)
    if len(pages) < MIN_PAGES:
        why = "; ".join(f"{url}: {reason}" for url, reason in list(skipped.items())[:5])
        raise permanent(
            "NotEnoughPages", f"{len(pages)} of the site's pages were analysed, a site needs {MIN_PAGES}: {why}"
        )
    result = await run_cpu(
        analyze_site, pages, model, score=req.score, top_gaps=req.top_gaps, neighbors=defaults.neighbors
    )
    result.stats["skipped"] = skipped
    await queries.store_site_result(pool, req.site_id, result)
    return {
        "pages_analysed": len(pages),
        "pages_skipped": len(skipped),
        "cases": len(result.cannibalization),
        "links": len(result.links),
        "site_intents": result.stats["site_intents"],
    }


@activity.defn(name="finalize_site")
async def finalize_site(req: FinalizeSite) -> None:
    await queries.finalize_site(
        resources().pool,
        site_id=req.site_id,
        status=req.status,
        stage=req.stage,
        error=req.error,
        workflow_id=req.workflow_id,
        run_id=req.run_id,
    )
