"""gap_analysis: the page's coverage of each cluster decided and explained; uncovered clusters ranked by opportunity."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
from temporalio import activity

from activities.common import (
    artifact_from,
    fingerprint,
    heartbeating,
    permanent,
    reuse_or_run,
    run_cpu,
    stored_segments,
)
from activities.runtime import resources
from db import queries
from pageperfect.analysis.clustering import Cluster, summarize_members
from pageperfect.analysis.coverage import Evidence, passages_of
from pageperfect.analysis.defaults import defaults_for
from pageperfect.analysis.embeddings import embed_with_cache
from pageperfect.analysis.gaps import analyze_evidence, analyze_gaps, coverage
from pageperfect.analysis.intents import strip_subject
from pageperfect.analysis.long_queries import embedding_text
from pageperfect.analysis.judge import Verdict, judge_boundary
from pageperfect.models import KeywordRow, StageInput, StageSummary


def _cluster_from_row(row, member_indices: list[int]) -> Cluster:
    return Cluster(
        cluster_id=row["cluster_id"],
        representative=row["representative"],
        keywords=list(row["keywords"]),
        member_indices=member_indices,
        size=row["size"],
        total_impressions=row["total_impressions"],
        avg_impressions=row["avg_impressions"],
        total_clicks=row["total_clicks"],
        avg_position=row["avg_position"],
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
    if (provider, segment_set["embedding_model"]) != (
        cluster_set["embedding_provider"],
        cluster_set["embedding_model"],
    ):
        raise permanent(
            "BadInput",
            f"segments were embedded with {provider}/{segment_set['embedding_model']} but queries with "
            f"{cluster_set['embedding_provider']}/{cluster_set['embedding_model']}; run again with force_update",
        )
    defaults = defaults_for(provider)
    threshold = job.options.gap_threshold if job.options.gap_threshold is not None else defaults.gap_threshold
    # The query graph that tells whether a cluster's disagreeing queries are a second intent (coverage.decide): the
    # grouping's own, with the job's links per query.
    neighbors = job.options.neighbors if job.options.neighbors is not None else defaults.neighbors
    model = defaults.coverage
    if defaults.similarity == "evidence" and model is not None:
        model = replace(model, threshold=threshold)
    judge = bool(
        res.llm is not None
        and job.options.judge
        and job.options.judge_max > 0
        and model is not None
        and defaults.similarity == "evidence"
    )

    async def run() -> StageSummary:
        cluster_rows = await queries.get_clusters(res.pool, cluster_set_id)
        segments, matrix = await stored_segments(res.pool, segment_set_id)
        info: dict = {"threshold": threshold, "score": job.options.score, "similarity": defaults.similarity}
        counts: dict = {}
        if defaults.similarity != "evidence" or model is None:
            clusters = [_cluster_from_row(r, []) for r in cluster_rows]
            report = await run_cpu(
                analyze_gaps,
                clusters,
                matrix,
                segments,
                threshold=threshold,
                score=job.options.score,
                similarity=defaults.similarity,
            )
        else:
            report, counts = await _evidence_report(cluster_rows, cluster_set, segments, matrix, model)
            if judge:
                judged = await heartbeating(
                    judge_boundary(
                        report.gaps,
                        res.llm,
                        boundary=model.boundary,
                        band=model.judge_band,
                        limit=job.options.judge_max,
                        lookup=_lookup,
                        store=_store,
                    )
                )
                counts.update({f"judge_{k}": v for k, v in judged.items()})
                report.coverage_score = coverage(report.gaps, [not g.has_gap for g in report.gaps])
                report.gaps.sort(key=lambda g: (not g.has_gap, -g.opportunity_score, g.cluster_id))
            info["judge"] = res.llm.model if judge else None
        report_id = await queries.insert_gap_report(
            res.pool,
            page_id=job.page_id,
            job_id=job.job_id,
            cluster_set_id=cluster_set_id,
            segment_set_id=segment_set_id,
            report=report,
        )
        return StageSummary(
            stage="gap_analysis",
            artifact_id=report_id,
            counts={
                "clusters": len(report.gaps),
                "gaps": sum(1 for g in report.gaps if g.has_gap),
                "coverage_score": round(report.coverage_score, 4),
                **counts,
            },
            info=info,
        )

    async def _evidence_report(cluster_rows, cluster_set, segments, matrix, model):
        subject = frozenset(cluster_set["subject"] or [])
        texts: list[str] = []
        members: list[list[int]] = []
        for row in cluster_rows:
            members.append(list(range(len(texts), len(texts) + len(row["keywords"]))))
            texts.extend(row["keywords"])
        by_query: dict[str, KeywordRow] = {}
        if cluster_set["keyword_set_id"] is not None:
            _, stored = await queries.get_keyword_set(res.pool, cluster_set["keyword_set_id"])
            by_query = {r.query: r for r in stored}
        rows = [
            by_query.get(q) or KeywordRow.model_construct(query=q, clicks=0, impressions=0, ctr=0, position=1)
            for q in texts
        ]
        passages = passages_of(segments, model.passages)
        sentence_texts = [p.embed_text for p in passages if p.kind != "segment"]  # sentences and windows
        embed_texts = [embedding_text(q) for q in texts]  # a long query's first words (analysis/long_queries.py)
        wanted = embed_texts + [strip_subject(q, subject) for q in embed_texts] + sentence_texts
        vectors, stats = await heartbeating(embed_with_cache(res.embedder, wanted, res.embedding_cache))
        n = len(texts)
        query_vectors, stripped = vectors[:n], vectors[n : 2 * n]
        sentence_vectors = iter(vectors[2 * n :])
        segment_vector = {s.segment_id: v for s, v in zip(segments, matrix)}
        passage_vectors = (
            np.stack(
                [segment_vector[p.segment_id] if p.kind == "segment" else next(sentence_vectors) for p in passages]
            )
            if passages
            else np.zeros((0, vectors.shape[1]), np.float32)
        )
        clusters = [_cluster_from_row(r, m) for r, m in zip(cluster_rows, members)]
        impressions = np.array([r.impressions for r in rows], dtype=np.float64)
        evidence = Evidence(texts, query_vectors, stripped, subject, passages, passage_vectors, model)
        report = await run_cpu(
            analyze_evidence,
            clusters,
            impressions,
            evidence,
            score=job.options.score,
            summarize=lambda part: summarize_members(rows, query_vectors, part),
            neighbors=neighbors,
        )
        return report, {f"embed_{k}": v for k, v in stats.items()}

    async def _lookup(key: str) -> Verdict | None:
        row = await queries.get_judgement(res.pool, key)
        return Verdict(row["status"], quote=row["quote"], reason=row["reason"]) if row else None

    async def _store(key: str, model_name: str, verdict: Verdict) -> None:
        await queries.put_judgement(
            res.pool,
            prompt_hash=key,
            model=model_name,
            status=verdict.status,
            quote=verdict.quote,
            reason=verdict.reason,
        )

    key = fingerprint(
        segment_set_id,
        cluster_set_id,
        threshold,
        job.options.score,
        defaults.similarity,
        asdict(model) if model else None,
        neighbors,
        res.llm.model if judge else None,
        job.options.judge_max,
    )
    return await reuse_or_run(inp, "gap_analysis", key, run)
