"""rewrite_draft: drafts (or, with no LLM configured, briefs) for the top gaps."""

from __future__ import annotations

from temporalio import activity

from activities.common import artifact_from, fingerprint, heartbeating, permanent, reuse_or_run
from activities.runtime import resources
from db import queries
from pageperfect.models import StageInput, StageSummary
from pageperfect.analysis.rewrite import PROMPT_VERSION, draft_for_gap, gap_context


@activity.defn(name="rewrite_draft")
async def rewrite_draft(inp: StageInput) -> StageSummary:
    res = resources()
    job, llm = inp.job, res.llm
    report_id = await artifact_from(inp, "gap_analysis")

    async def run() -> StageSummary:
        report = await queries.get_gap_report(res.pool, report_id)
        if report is None:  # pruned, or never stored: no retry brings it back
            raise permanent("MissingInput", f"gap report {report_id} is not stored")
        gaps = [g for g in await queries.get_gaps(res.pool, report_id) if g["has_gap"]][: job.options.top_gaps]
        segments = await queries.get_segments(res.pool, report["segment_set_id"], with_embeddings=False)
        page = await queries.get_page(res.pool, job.page_id)
        position = {s["segment_id"]: i for i, s in enumerate(segments)}
        drafts = []
        for gap in gaps:
            best = gap["best_match"] or {}
            index = position.get(best.get("segment_id"))
            around = segments[max(0, index - 1) : index + 2] if index is not None else []
            neighbours = [s["text"] for s in around if s["segment_id"] != best["segment_id"]]
            context = gap_context(dict(gap), neighbours)
            # A passage far below the gap threshold is unrelated: draft a new section after it instead.
            drafts.append(
                await heartbeating(
                    draft_for_gap(
                        context,
                        page["title"] if page else None,
                        llm,
                        similarity=best.get("similarity"),
                        min_rewrite_similarity=report["threshold"] / 2,
                    )
                )
            )
            activity.heartbeat(len(drafts))
        set_id = await queries.insert_draft_set(
            res.pool,
            page_id=job.page_id,
            job_id=job.job_id,
            gap_report_id=report_id,
            llm_provider=llm.name if llm else "brief",
            llm_model=llm.model if llm else None,
            drafts=drafts,
        )
        return StageSummary(
            stage="rewrite_draft",
            artifact_id=set_id,
            counts={
                "drafts": sum(1 for d in drafts if d.kind == "draft"),
                "briefs": sum(1 for d in drafts if d.kind == "brief"),
            },
            info={"llm": f"{llm.name}/{llm.model}" if llm else "none (offline briefs)"},
        )

    key = fingerprint(report_id, llm.model if llm else None, job.options.top_gaps, PROMPT_VERSION)
    return await reuse_or_run(inp, "rewrite_draft", key, run)
