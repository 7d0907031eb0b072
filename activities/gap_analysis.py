"""gap_analysis: cluster centroids against the page's segments; uncovered clusters ranked by opportunity."""

from __future__ import annotations

from types import SimpleNamespace

from temporalio import activity

from activities.common import artifact_from, fingerprint, permanent, reuse_or_run, run_cpu
from activities.runtime import resources
from db import queries
from pageperfect.analysis.clustering import Cluster
from pageperfect.analysis.embeddings import defaults_for
from pageperfect.analysis.gaps import analyze_gaps
from pageperfect.models import StageInput, StageSummary


def _cluster_from_row(row) -> Cluster:
    return Cluster(
        cluster_id=row["cluster_id"], representative=row["representative"], keywords=list(row["keywords"]),
        member_indices=[], size=row["size"], total_impressions=row["total_impressions"],
        avg_impressions=row["avg_impressions"], total_clicks=row["total_clicks"], avg_position=row["avg_position"],
        centroid=queries.unpack_vector(row["centroid"]),
    )


@activity.defn(name="gap_analysis")
async def gap_analysis(inp: StageInput) -> StageSummary:
    res = resources()
    job = inp.job
    segment_set_id = await artifact_from(inp, "segment_embed")
    cluster_set_id = await artifact_from(inp, "keyword_clustering")
    segment_set = await queries.get_segment_set(res.pool, segment_set_id)
    cluster_set = await queries.get_cluster_set(res.pool, cluster_set_id)
    if segment_set is None or cluster_set is None:
        raise permanent("MissingInput", f"segment set {segment_set_id} or cluster set {cluster_set_id} is not stored")
    provider = segment_set["embedding_provider"]
    if (provider, segment_set["embedding_model"]) != (cluster_set["embedding_provider"], cluster_set["embedding_model"]):
        raise permanent(
            "BadInput",
            f"segments were embedded with {provider}/{segment_set['embedding_model']} but queries with "
            f"{cluster_set['embedding_provider']}/{cluster_set['embedding_model']}; run again with force_update",
        )
    defaults = defaults_for(provider)
    threshold = job.options.gap_threshold if job.options.gap_threshold is not None else defaults.gap_threshold

    async def run() -> StageSummary:
        cluster_rows = await queries.get_clusters(res.pool, cluster_set_id)
        segment_rows = await queries.get_segments(res.pool, segment_set_id)
        clusters = [_cluster_from_row(r) for r in cluster_rows]
        segments = [SimpleNamespace(segment_id=r["segment_id"], heading_path=list(r["heading_path"]), text=r["text"])
                    for r in segment_rows]
        matrix = queries.unpack_vectors(r["embedding"] for r in segment_rows)
        report = await run_cpu(analyze_gaps, clusters, matrix, segments, threshold=threshold,
                               score=job.options.score, similarity=defaults.similarity)
        report_id = await queries.insert_gap_report(
            res.pool, page_id=job.page_id, job_id=job.job_id, cluster_set_id=cluster_set_id,
            segment_set_id=segment_set_id, report=report,
        )
        return StageSummary(
            stage="gap_analysis", artifact_id=report_id,
            counts={"clusters": len(clusters), "gaps": sum(1 for g in report.gaps if g.has_gap),
                    "coverage_score": round(report.coverage_score, 4)},
            info={"threshold": threshold, "score": job.options.score, "similarity": defaults.similarity},
        )

    key = fingerprint(segment_set_id, cluster_set_id, threshold, job.options.score, defaults.similarity)
    return await reuse_or_run(inp, "gap_analysis", key, run)
