"""A job's full result, assembled from the artifacts its stage summaries name."""

from __future__ import annotations

from typing import Any

import asyncpg

from db import queries
from pageperfect.stages import ARTIFACT_STAGE

# Embedders that run on this machine, as the note names them.
LOCAL_EMBEDDERS = {
    "hashing": "the lexical hashing embedder",
    "minilm": "the local semantic model all-MiniLM-L6-v2",
}


def offline_note(embedding: dict | None, llm: dict | None) -> str | None:
    """What of the job ran without the API, and why; None when nothing did."""
    local = LOCAL_EMBEDDERS.get(embedding["provider"]) if embedding else None
    briefs = bool(llm and llm["provider"] == "brief")
    if local and briefs:
        return (
            f"offline defaults: no OPENAI_API_KEY is set, so queries and segments are embedded with {local} "
            "and the top gaps get briefs instead of LLM drafts"
        )
    if local:
        return f"queries and segments are embedded offline with {local} (PAGEPERFECT_EMBEDDING_PROVIDER)"
    if briefs:
        return "no OPENAI_API_KEY is set, so the top gaps get briefs instead of LLM drafts"
    return None


async def artifact_ids(pool: asyncpg.Pool, job: asyncpg.Record) -> dict[str, int | None]:
    """The id of each artifact (by its table, as the stage table names them) the job's result reads.

    A stage the job ran: what it stored; a stage the job skipped: the page's latest; a stage the
    job has not reached (or never will): none, never another job's output.
    """
    stages = (job["result"] or {}).get("stages", {})
    skipped = set((job["payload"] or {}).get("skip_steps") or [])
    ids: dict[str, int | None] = {}
    for artifact, stage in ARTIFACT_STAGE.items():
        summary = stages.get(stage)
        if summary is None and stage in skipped:
            summary = await queries.latest_stage_output(pool, job["page_id"], stage)
        ids[artifact] = (summary or {}).get("artifact_id")
    return ids


async def build_result(pool: asyncpg.Pool, job: asyncpg.Record) -> dict[str, Any]:
    stages = (job["result"] or {}).get("stages", {})
    page = await queries.get_page(pool, job["page_id"])
    ids = await artifact_ids(pool, job)
    crawl_id, segment_set_id, report_id = ids["crawls"], ids["segment_sets"], ids["gap_reports"]
    draft_set_id, cluster_set_id = ids["draft_sets"], ids["cluster_sets"]

    crawl = await queries.get_crawl(pool, crawl_id) if crawl_id else None
    segment_set = await queries.get_segment_set(pool, segment_set_id) if segment_set_id else None
    report = await queries.get_gap_report(pool, report_id) if report_id else None
    draft_set = await queries.get_draft_set(pool, draft_set_id) if draft_set_id else None
    cluster_set = await queries.get_cluster_set(pool, cluster_set_id) if cluster_set_id else None

    clusters = (
        [dict(r) for r in await queries.get_clusters(pool, cluster_set_id, with_centroids=False)]
        if cluster_set_id
        else []
    )
    gaps = []
    for row in await queries.get_gaps(pool, report_id) if report_id else []:
        gaps.append(
            {
                "cluster_id": row["cluster_id"],
                "representative": row["representative"],
                "keywords": list(row["keywords"]),
                "total_impressions": row["total_impressions"],
                "avg_position": row["avg_position"],
                "has_gap": row["has_gap"],
                "opportunity_score": row["opportunity_score"],
                "best_match": row["best_match"],
                "top_matches": row["top_matches"],
                "coverage": row["coverage"],
                "decided_by": row["decided_by"],
                "explanation": row["explanation"],
            }
        )
    if report and report["method"] == "evidence":
        clusters = _final_groups(clusters, gaps)
    drafts = []
    for row in await queries.get_drafts(pool, draft_set_id) if draft_set_id else []:
        drafts.append(
            {
                "cluster_id": row["cluster_id"],
                "kind": row["kind"],
                "action": row["action"],
                "target_segment_id": row["target_segment_id"],
                "suggested_heading": row["suggested_heading"],
                "original": row["original"],
                "draft": row["draft"],
                "diff": row["diff"],
                "model": row["model"],
                "prompt_version": row["prompt_version"],
            }
        )

    # The drafts in the order of their gaps' ranks: the top of the list first, as the table has it.
    rank = {g["cluster_id"]: i for i, g in enumerate(gaps)}
    drafts.sort(key=lambda d: (rank.get(d["cluster_id"], len(rank)), d["cluster_id"]))

    embedding = (
        {"provider": segment_set["embedding_provider"], "model": segment_set["embedding_model"]}
        if segment_set
        else None
    )
    llm = {"provider": draft_set["llm_provider"], "model": draft_set["llm_model"]} if draft_set else None
    note = offline_note(embedding, llm)
    return {
        "job_id": str(job["id"]),
        "status": job["status"],
        "page": {
            "url": page["url"] if page else job["url"],
            "title": page["title"] if page else None,
            "meta_description": page["meta_description"] if page else None,
        },
        "providers": {
            "crawl": crawl["provider"] if crawl else None,
            "embedding": embedding,
            "llm": llm,
            "offline": note is not None,
            "note": note,
        },
        "stats": {
            "segments": int(stages.get("segment_embed", {}).get("counts", {}).get("segments", 0)),
            "keywords": int(stages.get("keyword_clustering", {}).get("counts", {}).get("keywords", 0)),
            # Long or prompt-like queries (analysis/long_queries.py): clustered only with include_long_queries.
            "long_queries": len(cluster_set["long_queries"]) if cluster_set else 0,
            "clusters": len(clusters),
            "grouped_share": _grouped_share(clusters),
            "clustering": cluster_set["method"] if cluster_set else None,
            "gaps": sum(1 for g in gaps if g["has_gap"]),
            "coverage_method": report["method"] if report else None,
            "decided_by_llm": sum(1 for g in gaps if g.get("decided_by") == "llm"),
            "coverage_score": report["coverage_score"] if report else None,
            "gap_threshold": report["threshold"] if report else None,
            "score": report["score"] if report else None,
        },
        "stages": stages,
        "clusters": clusters,
        "long_queries": {
            "included": bool(cluster_set["long_queries_included"]) if cluster_set else False,
            "queries": list(cluster_set["long_queries"]) if cluster_set else [],
        },
        "gaps": gaps,
        "drafts": drafts,
    }


def _final_groups(clusters: list[dict], gaps: list[dict]) -> list[dict]:
    """The clusters as the gap analysis left them: a split cluster's parts and a merged gap's whole stand in
    for the clusters they came from, so every query is in exactly one group."""
    by_id = {c["cluster_id"]: c for c in clusters}
    out = []
    for g in sorted(gaps, key=lambda g: g["cluster_id"]):
        base = dict(by_id.get(g["cluster_id"], {}))
        base.update(
            {
                "cluster_id": g["cluster_id"],
                "representative": g["representative"],
                "keywords": g["keywords"],
                "size": len(g["keywords"]),
                "total_impressions": g["total_impressions"],
                "avg_position": g["avg_position"],
            }
        )
        explanation = g.get("explanation") or {}
        for key in ("split_from", "merged"):
            if key in explanation:
                base[key] = explanation[key]
        out.append(base)
    return out


def _grouped_share(clusters: list[dict]) -> float | None:
    """The share of queries in clusters of two or more."""
    total = sum(len(c["keywords"]) for c in clusters)
    return round(sum(len(c["keywords"]) for c in clusters if len(c["keywords"]) > 1) / total, 4) if total else None
