"""Every SQL statement PagePerfect runs. Functions take a connection or pool first."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from contextlib import asynccontextmanager
from typing import Any
from collections.abc import AsyncIterator, Iterable, Sequence

import asyncpg
import numpy as np
from asyncpg.pool import PoolConnectionProxy

from pageperfect.models import (
    FINAL_STATUSES,
    BatchPageStatus,
    BatchStatus,
    JobInput,
    JobOutcome,
    JobStatus,
    KeywordRow,
)
from pageperfect.stages import STAGE_ARTIFACTS, STAGE_NAMES, stage_position

Conn = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy  # a connection, a pool, or one taken from it

# The final statuses as an SQL list, for the statements below (names from the vocabulary, never from input).
_FINAL_SQL = ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES))

# A stage row moves forward only: a later attempt, or a later status of the same attempt.
_STATUS_RANK_SQL = """CASE {col} WHEN 'pending' THEN 0 WHEN 'processing' THEN 1 WHEN 'retrying' THEN 2
    ELSE 3 END"""


@asynccontextmanager
async def transaction(conn: Conn) -> AsyncIterator[asyncpg.Connection | PoolConnectionProxy]:
    """A transaction on the given connection, or on one taken from the given pool."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as held:
            async with held.transaction():
                yield held
    else:
        async with conn.transaction():
            yield conn


# ---------------------------------------------------------------- pages, keywords


async def get_or_create_page(conn: Conn, url: str) -> int:
    return await conn.fetchval(
        """INSERT INTO pages (url) VALUES ($1)
           ON CONFLICT (url) DO UPDATE SET updated_at = pages.updated_at
           RETURNING id""",
        url,
    )


async def get_page(conn: Conn, page_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM pages WHERE id = $1", page_id)


async def update_page_meta(conn: Conn, page_id: int, title: str | None, description: str | None) -> None:
    await conn.execute(
        "UPDATE pages SET title = $2, meta_description = $3, updated_at = now() WHERE id = $1",
        page_id,
        title,
        description,
    )


def keyword_rows_hash(rows: Sequence[KeywordRow]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r.query):
        digest.update(json.dumps(row.model_dump(), sort_keys=True).encode())
    return digest.hexdigest()


async def create_keyword_set(
    conn: Conn, page_id: int, rows: Sequence[KeywordRow], *, source: str, date_range: str | None = None
) -> int:
    merged: dict[str, KeywordRow] = {}
    for row in rows:  # one row per query: the first occurrence wins
        merged.setdefault(row.query, row)
    unique = list(merged.values())
    async with transaction(conn) as conn:
        set_id = await conn.fetchval(
            """INSERT INTO keyword_sets (page_id, source, date_range, row_count, content_hash)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            page_id,
            source,
            date_range,
            len(unique),
            keyword_rows_hash(unique),
        )
        await conn.copy_records_to_table(
            "keywords",
            columns=["keyword_set_id", "query", "clicks", "impressions", "ctr", "position"],
            records=[(set_id, r.query, r.clicks, r.impressions, r.ctr, r.position) for r in unique],
        )
    return set_id


async def get_keyword_set(conn: Conn, keyword_set_id: int) -> tuple[asyncpg.Record | None, list[KeywordRow]]:
    header = await conn.fetchrow("SELECT * FROM keyword_sets WHERE id = $1", keyword_set_id)
    rows = await conn.fetch(
        "SELECT query, clicks, impressions, ctr, position FROM keywords WHERE keyword_set_id = $1 ORDER BY query",
        keyword_set_id,
    )
    return header, [KeywordRow.model_construct(**dict(r)) for r in rows]


async def keyword_set_hash(conn: Conn, keyword_set_id: int) -> str | None:
    return await conn.fetchval("SELECT content_hash FROM keyword_sets WHERE id = $1", keyword_set_id)


async def store_gsc_rows(
    conn: Conn, page_url: str, rows: Iterable[KeywordRow], *, date_range: str | None, source: str
) -> int:
    records = [(page_url, date_range or "", r.query, r.clicks, r.impressions, r.ctr, r.position, source) for r in rows]
    async with transaction(conn) as conn:
        await conn.executemany(
            """INSERT INTO gsc_keywords (page_url, date_range, query, clicks, impressions, ctr, position, source)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (page_url, date_range, md5(query)) DO UPDATE SET
                 clicks = EXCLUDED.clicks, impressions = EXCLUDED.impressions, ctr = EXCLUDED.ctr,
                 position = EXCLUDED.position, source = EXCLUDED.source, imported_at = now()""",
            records,
        )
    return len(records)


async def latest_gsc_rows(conn: Conn, page_url: str) -> tuple[str | None, list[KeywordRow]]:
    """The most recently imported date range's rows for a page."""
    latest = await conn.fetchrow(
        "SELECT date_range FROM gsc_keywords WHERE page_url = $1 ORDER BY imported_at DESC LIMIT 1", page_url
    )
    if latest is None:
        return None, []
    rows = await conn.fetch(
        """SELECT query, clicks, impressions, ctr, position FROM gsc_keywords
           WHERE page_url = $1 AND date_range = $2""",
        page_url,
        latest["date_range"],
    )
    return latest["date_range"] or None, [KeywordRow.model_construct(**dict(r)) for r in rows]


# ---------------------------------------------------------------- jobs (intake)


async def insert_job(conn: Conn, job: JobInput, payload: dict, workflow_id: str) -> None:
    async with transaction(conn) as conn:
        await conn.execute(
            """INSERT INTO pageperfect_jobs (id, page_id, url, status, priority, payload, max_attempts,
                                             retry_delay_seconds, workflow_id)
               VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8)""",
            job.job_id,
            job.page_id,
            job.url,
            job.priority,
            payload,
            job.max_attempts,
            job.retry_delay_seconds,
            workflow_id,
        )
        await conn.executemany(
            "INSERT INTO pageperfect_job_stages (job_id, stage, position) VALUES ($1, $2, $3)",
            [(job.job_id, name, i) for i, name in enumerate(STAGE_NAMES)],
        )


async def set_job_run(conn: Conn, job_id: str, run_id: str) -> None:
    await conn.execute("UPDATE pageperfect_jobs SET run_id = $2 WHERE id = $1", job_id, run_id)


async def delete_job(conn: Conn, job_id: str) -> None:
    await conn.execute("DELETE FROM pageperfect_jobs WHERE id = $1", job_id)


async def get_job(conn: Conn, job_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM pageperfect_jobs WHERE id = $1", job_id)


async def get_job_stages(conn: Conn, job_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM pageperfect_job_stages WHERE job_id = $1 ORDER BY position", job_id)


async def list_jobs(
    conn: Conn, *, status: str | None = None, stage: str | None = None, limit: int = 50
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT * FROM v_pageperfect_job_status
           WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR stage = $2)
           ORDER BY created_at DESC LIMIT $3""",
        status,
        stage,
        limit,
    )


async def recent_jobs(conn: Conn, *, days: int = 1) -> list[asyncpg.Record]:
    """Jobs still open, and those created in the last days: what a reconcile looks at."""
    return await conn.fetch(
        """SELECT * FROM pageperfect_jobs
           WHERE status IN ('queued', 'processing') OR created_at > now() - make_interval(days => $1)
           ORDER BY created_at""",
        days,
    )


async def set_job_status(conn: Conn, job_id: str, status: str) -> None:
    await conn.execute(
        f"""UPDATE pageperfect_jobs SET status = $2, updated_at = now(),
                  completed_at = CASE WHEN $2 IN ({_FINAL_SQL})
                                      THEN coalesce(completed_at, now()) END
           WHERE id = $1""",
        job_id,
        status,
    )


async def set_job_retry_settings(
    conn: Conn, job_id: str, *, max_attempts: int | None, retry_delay_seconds: float | None
) -> None:
    """A tuned job's retry settings, on the job row and on the stage rows not started yet."""
    async with transaction(conn) as conn:
        await conn.execute(
            """UPDATE pageperfect_jobs SET max_attempts = $2, retry_delay_seconds = $3, updated_at = now()
               WHERE id = $1""",
            job_id,
            max_attempts,
            retry_delay_seconds,
        )
        await conn.execute(
            """UPDATE pageperfect_job_stages SET max_attempts = $2, updated_at = now()
               WHERE job_id = $1 AND status = 'pending' AND $2::int IS NOT NULL""",
            job_id,
            max_attempts,
        )


# ---------------------------------------------------------------- the mirror


async def mirror_stage(
    conn: Conn,
    *,
    job_id: str,
    stage: str,
    status: str,
    attempt: int,
    max_attempts: int | None,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    duration_ms: float | None = None,
    last_error: str | None = None,
    next_retry_at: datetime | None = None,
    reused: bool = False,
) -> None:
    old_rank = _STATUS_RANK_SQL.format(col="s.status")
    new_rank = _STATUS_RANK_SQL.format(col="EXCLUDED.status")
    await conn.execute(
        f"""INSERT INTO pageperfect_job_stages AS s
              (job_id, stage, position, status, attempt_count, max_attempts, started_at, completed_at,
               duration_ms, last_error, next_retry_at, reused)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (job_id, stage) DO UPDATE SET
              status = EXCLUDED.status,
              attempt_count = EXCLUDED.attempt_count,
              max_attempts = coalesce(EXCLUDED.max_attempts, s.max_attempts),
              started_at = coalesce(s.started_at, EXCLUDED.started_at),
              completed_at = EXCLUDED.completed_at,
              duration_ms = coalesce(EXCLUDED.duration_ms, s.duration_ms),
              last_error = coalesce(EXCLUDED.last_error, s.last_error),
              next_retry_at = EXCLUDED.next_retry_at,
              reused = EXCLUDED.reused,
              updated_at = now()
            WHERE s.status <> 'skipped'
              -- A later attempt wins even over 'completed': Temporal ran the stage again, so that
              -- completion never reached it (a worker lost between finishing and reporting).
              AND (EXCLUDED.attempt_count > s.attempt_count
                   OR (EXCLUDED.attempt_count = s.attempt_count AND s.status <> 'completed'
                       AND {new_rank} > {old_rank}))""",
        job_id,
        stage,
        stage_position(stage),
        status,
        attempt,
        max_attempts,
        started_at,
        completed_at,
        duration_ms,
        last_error,
        next_retry_at,
        reused,
    )


async def mirror_event(
    conn: Conn,
    *,
    job_id: str,
    stage: str | None,
    status: str,
    message: str,
    metadata: dict[str, Any],
    workflow_id: str,
    run_id: str,
    activity_id: str,
    attempt: int,
    created_at: datetime | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO pageperfect_job_events
             (job_id, stage, status, message, metadata, workflow_id, run_id, activity_id, attempt, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()))
           ON CONFLICT (workflow_id, run_id, activity_id, attempt, status) DO NOTHING""",
        job_id,
        stage,
        status,
        message,
        metadata,
        workflow_id,
        run_id,
        activity_id,
        attempt,
        created_at,
    )


async def mirror_job_progress(conn: Conn, *, job_id: str, stage: str, attempt: int, run_id: str) -> None:
    """The job row follows its running stage; a final job row is never reopened.

    With stages running side by side it names the first running one in table order,
    as the workflow's PagePerfectStage attribute does.
    """
    await conn.execute(
        f"""UPDATE pageperfect_jobs SET status = 'processing',
                  stage = coalesce((SELECT s.stage FROM pageperfect_job_stages s
                                    WHERE s.job_id = $1 AND s.status IN ('processing', 'retrying')
                                    ORDER BY s.position LIMIT 1), $2),
                  attempt_count = greatest(attempt_count, $3),
                  started_at = coalesce(started_at, now()), run_id = coalesce(run_id, $4), updated_at = now()
           WHERE id = $1 AND status NOT IN ({_FINAL_SQL})""",
        job_id,
        stage,
        attempt,
        run_id,
    )


async def finalize_job(conn: Conn, outcome: JobOutcome, result: dict | None) -> None:
    """The job's final row, its skipped stages and, when it failed, its dead letter: all or nothing."""
    job = outcome.job
    async with transaction(conn) as conn:
        await conn.execute(
            """UPDATE pageperfect_jobs SET status = $2, stage = coalesce($3, stage), result = $4, error = $5,
                      attempt_count = greatest(attempt_count, $6), completed_at = coalesce(completed_at, now()),
                      run_id = coalesce(run_id, $7), updated_at = now()
               WHERE id = $1""",
            job.job_id,
            outcome.status,
            outcome.stage,
            result,
            outcome.failure_reason,
            outcome.attempt_count,
            outcome.run_id,
        )
        for name in job.skip_steps:
            await conn.execute(
                """UPDATE pageperfect_job_stages SET status = 'skipped', updated_at = now()
                   WHERE job_id = $1 AND stage = $2 AND status = 'pending'""",
                job.job_id,
                name,
            )
        if outcome.status == JobStatus.CANCELLED:
            await conn.execute(
                """UPDATE pageperfect_job_stages SET status = 'cancelled', updated_at = now()
                   WHERE job_id = $1 AND status IN ('processing', 'retrying')""",
                job.job_id,
            )
        if outcome.status == JobStatus.FAILED:  # the workflow cancelled the stages still running beside the failed one
            await conn.execute(
                """UPDATE pageperfect_job_stages SET status = 'cancelled', updated_at = now()
                   WHERE job_id = $1 AND status IN ('processing', 'retrying') AND stage IS DISTINCT FROM $2""",
                job.job_id,
                outcome.stage,
            )
            await conn.execute(
                """INSERT INTO pageperfect_dead_letters
                     (job_id, workflow_id, run_id, stage, payload, failure_reason, error_details, attempt_count)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (workflow_id, run_id) DO NOTHING""",
                job.job_id,
                outcome.workflow_id,
                outcome.run_id,
                outcome.stage,
                job.model_dump(mode="json"),
                outcome.failure_reason or "failed",
                outcome.error_details,
                outcome.attempt_count,
            )


async def stage_attempts(conn: Conn, job_id: str, stage: str) -> int:
    value = await conn.fetchval(
        "SELECT attempt_count FROM pageperfect_job_stages WHERE job_id = $1 AND stage = $2", job_id, stage
    )
    return value or 0


async def list_dead_letters(conn: Conn, limit: int = 50) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM pageperfect_dead_letters ORDER BY routed_at DESC LIMIT $1", limit)


async def get_dead_letter(conn: Conn, dead_letter_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM pageperfect_dead_letters WHERE id = $1", dead_letter_id)


async def mark_redriven(conn: Conn, dead_letter_id: int, new_job_id: str) -> None:
    await conn.execute(
        "UPDATE pageperfect_dead_letters SET redriven_at = now(), redrive_job_id = $2 WHERE id = $1",
        dead_letter_id,
        new_job_id,
    )


# ---------------------------------------------------------------- stage outputs (reuse)


async def find_stage_output(conn: Conn, page_id: int, stage: str, fingerprint: str, max_age: timedelta) -> dict | None:
    return await conn.fetchval(
        """SELECT summary FROM stage_outputs
           WHERE page_id = $1 AND stage = $2 AND fingerprint = $3 AND created_at > now() - $4::interval
           ORDER BY created_at DESC LIMIT 1""",
        page_id,
        stage,
        fingerprint,
        max_age,
    )


async def latest_stage_output(conn: Conn, page_id: int, stage: str) -> dict | None:
    return await conn.fetchval(
        "SELECT summary FROM stage_outputs WHERE page_id = $1 AND stage = $2 ORDER BY created_at DESC LIMIT 1",
        page_id,
        stage,
    )


async def record_stage_output(
    conn: Conn, page_id: int, stage: str, fingerprint: str, job_id: str, summary: dict
) -> None:
    await conn.execute(
        "INSERT INTO stage_outputs (page_id, stage, fingerprint, job_id, summary) VALUES ($1, $2, $3, $4, $5)",
        page_id,
        stage,
        fingerprint,
        job_id,
        summary,
    )


# ---------------------------------------------------------------- crawls


async def insert_crawl(
    conn: Conn, *, page_id: int, job_id: str, provider: str, requested_url: str, external_id: str | None
) -> int:
    return await conn.fetchval(
        """INSERT INTO crawls (page_id, job_id, provider, external_id, status, requested_url)
           VALUES ($1, $2, $3, $4, 'submitted', $5) RETURNING id""",
        page_id,
        job_id,
        provider,
        external_id,
        requested_url,
    )


async def store_crawl_result(conn: Conn, crawl_id: int, result: Any) -> None:
    await conn.execute(
        """UPDATE crawls SET status = 'fetched', final_url = $2, http_status = $3, content_type = $4,
                  encoding = $5, html = $6, bytes = $7, redirects = $8, fetched_at = $9
           WHERE id = $1""",
        crawl_id,
        result.final_url,
        result.status_code,
        result.content_type,
        result.encoding,
        result.html.replace("\x00", ""),
        result.bytes,
        list(result.redirects),
        result.fetched_at,
    )


async def get_crawl(conn: Conn, crawl_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM crawls WHERE id = $1", crawl_id)


# ---------------------------------------------------------------- segments and embeddings

# Vectors (embeddings, centroids) are stored as packed big-endian float32 (migration 004).
_PACKED = np.dtype(">f4")


def pack_vector(vector: Any) -> bytes:
    return np.asarray(vector, dtype=_PACKED).tobytes()


def pack_vectors(matrix: Any) -> list[bytes]:
    packed = np.asarray(matrix, dtype=_PACKED)
    return [row.tobytes() for row in packed]


def unpack_vector(packed: bytes) -> np.ndarray:
    return np.frombuffer(packed, dtype=_PACKED).astype(np.float32)


def unpack_vectors(rows: Iterable[bytes]) -> np.ndarray:
    """Rows of packed vectors as one float32 matrix (0 x 1 when there are none)."""
    packed = list(rows)
    if not packed:
        return np.zeros((0, 1), dtype=np.float32)
    return np.frombuffer(b"".join(packed), dtype=_PACKED).reshape(len(packed), -1).astype(np.float32)


async def insert_segment_set(
    conn: Conn,
    *,
    page_id: int,
    crawl_id: int,
    job_id: str,
    page: Any,
    provider: str,
    model: str,
    embeddings: np.ndarray,
) -> int:
    async with transaction(conn) as conn:
        set_id = await conn.fetchval(
            """INSERT INTO segment_sets (page_id, crawl_id, job_id, extractor, embedding_provider, embedding_model,
                                         title, meta_description, truncated)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
            page_id,
            crawl_id,
            job_id,
            page.extractor,
            provider,
            model,
            page.title,
            page.meta_description,
            bool(getattr(page, "truncated", False)),
        )
        await conn.copy_records_to_table(
            "segments",
            columns=[
                "segment_set_id",
                "segment_id",
                "position",
                "kind",
                "heading_level",
                "heading_path",
                "text",
                "embedding",
            ],
            records=[
                (set_id, s.segment_id, s.position, s.kind, s.heading_level, list(s.heading_path), s.text, vector)
                for s, vector in zip(page.segments, pack_vectors(embeddings), strict=True)
            ],
        )
    return set_id


async def get_segment_set(conn: Conn, segment_set_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM segment_sets WHERE id = $1", segment_set_id)


async def _rows_of_set(
    conn: Conn, table: str, set_column: str, set_id: int, columns: str, order: str
) -> list[asyncpg.Record]:
    """An artifact's rows (a segment set's segments, a cluster set's clusters), in their order; names from the code."""
    return await conn.fetch(f"SELECT {columns} FROM {table} WHERE {set_column} = $1 ORDER BY {order}", set_id)


async def get_segments(conn: Conn, segment_set_id: int, *, with_embeddings: bool = True) -> list[asyncpg.Record]:
    columns = "segment_id, position, kind, heading_level, heading_path, text" + (
        ", embedding" if with_embeddings else ""
    )
    return await _rows_of_set(conn, "segments", "segment_set_id", segment_set_id, columns, "position")


class PostgresEmbeddingCache:
    """The embedding cache keyed by (provider, model, text hash)."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def get_many(self, provider: str, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]:
        # A hit moves used_at on (at most once a day), which `pageperfect prune` reads.
        rows = await self._pool.fetch(
            """WITH hit AS (SELECT text_hash, embedding, used_at FROM embedding_cache
                            WHERE provider = $1 AND model = $2 AND text_hash = ANY($3::text[])),
                    touched AS (UPDATE embedding_cache e SET used_at = now() FROM hit
                                WHERE e.provider = $1 AND e.model = $2 AND e.text_hash = hit.text_hash
                                  AND hit.used_at < now() - interval '1 day')
               SELECT text_hash, embedding FROM hit""",
            provider,
            model,
            text_hashes,
        )
        return {r["text_hash"]: unpack_vector(r["embedding"]) for r in rows}

    async def put_many(self, provider: str, model: str, items: dict[str, np.ndarray]) -> None:
        await self._pool.executemany(
            """INSERT INTO embedding_cache (provider, model, text_hash, embedding) VALUES ($1, $2, $3, $4)
               ON CONFLICT DO NOTHING""",
            [(provider, model, h, pack_vector(v)) for h, v in items.items()],
        )


# ---------------------------------------------------------------- clusters, gaps, drafts


async def insert_cluster_set(
    conn: Conn,
    *,
    page_id: int,
    keyword_set_id: int | None,
    job_id: str,
    provider: str,
    model: str,
    eps: float,
    min_samples: int,
    keyword_count: int,
    clusters: Sequence[Any],
    method: str = "dbscan",
    params: dict | None = None,
    subject: Sequence[str] = (),
    long_queries: Sequence[str] = (),
    long_queries_included: bool = False,
) -> int:
    async with transaction(conn) as conn:
        set_id = await conn.fetchval(
            """INSERT INTO cluster_sets (page_id, keyword_set_id, job_id, embedding_provider, embedding_model, eps,
                                         min_samples, keyword_count, method, params, subject, long_queries,
                                         long_queries_included)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id""",
            page_id,
            keyword_set_id,
            job_id,
            provider,
            model,
            eps,
            min_samples,
            keyword_count,
            method,
            params or {},
            sorted(subject),
            list(long_queries),
            long_queries_included,
        )
        await conn.copy_records_to_table(
            "clusters",
            columns=[
                "cluster_set_id",
                "cluster_id",
                "representative",
                "keywords",
                "size",
                "total_impressions",
                "avg_impressions",
                "total_clicks",
                "avg_position",
                "centroid",
            ],
            records=[
                (
                    set_id,
                    c.cluster_id,
                    c.representative,
                    list(c.keywords),
                    c.size,
                    c.total_impressions,
                    c.avg_impressions,
                    c.total_clicks,
                    c.avg_position,
                    pack_vector(c.centroid),
                )
                for c in clusters
            ],
        )
    return set_id


async def get_cluster_set(conn: Conn, cluster_set_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM cluster_sets WHERE id = $1", cluster_set_id)


async def get_clusters(conn: Conn, cluster_set_id: int, *, with_centroids: bool = True) -> list[asyncpg.Record]:
    columns = (
        "cluster_id, representative, keywords, size, total_impressions, avg_impressions, total_clicks, "
        "avg_position" + (", centroid" if with_centroids else "")
    )
    return await _rows_of_set(conn, "clusters", "cluster_set_id", cluster_set_id, columns, "cluster_id")


async def insert_gap_report(
    conn: Conn, *, page_id: int, job_id: str, cluster_set_id: int, segment_set_id: int, report: Any
) -> int:
    async with transaction(conn) as conn:
        report_id = await conn.fetchval(
            """INSERT INTO gap_reports (page_id, job_id, cluster_set_id, segment_set_id, threshold, score,
                                        coverage_score, method)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
            page_id,
            job_id,
            cluster_set_id,
            segment_set_id,
            report.threshold,
            report.score,
            report.coverage_score,
            getattr(report, "method", "similarity"),
        )
        await conn.executemany(
            """INSERT INTO gaps (gap_report_id, rank, cluster_id, representative, keywords, total_impressions,
                                 avg_position, has_gap, opportunity_score, best_match, top_matches, size, coverage,
                                 decided_by, explanation)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
            [
                (
                    report_id,
                    rank,
                    g.cluster_id,
                    g.representative,
                    list(g.keywords),
                    g.total_impressions,
                    g.avg_position,
                    g.has_gap,
                    g.opportunity_score,
                    _match_json(g.best_match),
                    [_match_json(m) for m in g.top_matches],
                    len(g.keywords),
                    g.coverage,
                    g.decided_by,
                    g.explanation,
                )
                for rank, g in enumerate(report.gaps)
            ],
        )
    return report_id


def _match_json(match: Any) -> dict | None:
    if match is None:
        return None
    return {
        "segment_id": match.segment_id,
        "heading_path": list(match.heading_path),
        "text": match.text,
        "similarity": float(match.similarity),
    }


async def get_judgement(conn: Conn, prompt_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM llm_judgements WHERE prompt_hash = $1", prompt_hash)


async def put_judgement(conn: Conn, *, prompt_hash: str, model: str, status: str, quote: str, reason: str) -> None:
    """Only usable answers are kept: a malformed answer or a refusal is asked again next time."""
    await conn.execute(
        """INSERT INTO llm_judgements (prompt_hash, model, status, quote, reason) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (prompt_hash) DO NOTHING""",
        prompt_hash,
        model,
        status,
        quote,
        reason,
    )


async def get_gap_report(conn: Conn, gap_report_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM gap_reports WHERE id = $1", gap_report_id)


async def get_gaps(conn: Conn, gap_report_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM gaps WHERE gap_report_id = $1 ORDER BY rank", gap_report_id)


async def insert_draft_set(
    conn: Conn,
    *,
    page_id: int,
    job_id: str,
    gap_report_id: int,
    llm_provider: str,
    llm_model: str | None,
    drafts: Sequence[Any],
) -> int:
    async with transaction(conn) as conn:
        set_id = await conn.fetchval(
            """INSERT INTO draft_sets (page_id, job_id, gap_report_id, llm_provider, llm_model)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""",
            page_id,
            job_id,
            gap_report_id,
            llm_provider,
            llm_model,
        )
        await conn.executemany(
            """INSERT INTO drafts (draft_set_id, cluster_id, kind, action, target_segment_id, suggested_heading,
                                   original, draft, diff, model, prompt_version)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
            [
                (
                    set_id,
                    d.cluster_id,
                    d.kind,
                    d.action,
                    d.target_segment_id,
                    d.suggested_heading,
                    d.original,
                    d.draft,
                    d.diff,
                    d.model,
                    d.prompt_version,
                )
                for d in drafts
            ],
        )
    return set_id


async def get_draft_set(conn: Conn, draft_set_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM draft_sets WHERE id = $1", draft_set_id)


async def get_drafts(conn: Conn, draft_set_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM drafts WHERE draft_set_id = $1 ORDER BY cluster_id", draft_set_id)


# ---------------------------------------------------------------- API keys


async def insert_api_key(conn: Conn, *, name: str, key_hash: str, key_prefix: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """INSERT INTO pageperfect_api_keys (name, key_hash, key_prefix) VALUES ($1, $2, $3)
           RETURNING id, name, key_prefix, created_at, revoked_at""",
        name,
        key_hash,
        key_prefix,
    )


async def find_api_key(conn: Conn, key_hash: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, key_hash, revoked_at FROM pageperfect_api_keys WHERE key_hash = $1", key_hash
    )


async def list_api_keys(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, name, key_prefix, created_at, revoked_at FROM pageperfect_api_keys ORDER BY id")


async def revoke_api_key(conn: Conn, key_id: int) -> asyncpg.Record | None:
    """Marks the key revoked (once; the first revocation time stays). None for an unknown id."""
    return await conn.fetchrow(
        """UPDATE pageperfect_api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
           RETURNING id, name, key_prefix, created_at, revoked_at""",
        key_id,
    )


# ---------------------------------------------------------------- stages


async def stage_backlog(conn: Conn) -> list[asyncpg.Record]:
    """The operators' backlog view: per stage, jobs waiting for it, running it, waiting to retry it."""
    return await conn.fetch("SELECT * FROM get_pageperfect_stage_backlog()")


# ---------------------------------------------------------------- batches

BATCH_COUNT_KEYS = tuple(status.value for status in BatchPageStatus)

# A batch page's status (BatchPageStatus) from its item (i), its batch (b) and its job (j, when it has one).
_BATCH_PAGE_STATUS_SQL = f"""CASE WHEN i.error IS NOT NULL THEN '{BatchPageStatus.REJECTED}'
                       WHEN j.id IS NULL AND b.status = '{BatchStatus.CANCELLED}' THEN '{BatchPageStatus.CANCELLED}'
                       WHEN j.id IS NULL THEN '{BatchPageStatus.WAITING}'
                       ELSE j.status END"""


async def insert_batch(
    conn: Conn,
    batch_id: str,
    *,
    source: str,
    concurrency: int,
    options: dict,
    webhook_url: str | None,
    workflow_id: str,
    run_id: str | None,
    items: Sequence[tuple[str, int | None, str | None]],
) -> int:
    """The batch and its pages (url, keyword set, refusal); a second call for the same batch adds nothing."""
    async with transaction(conn) as conn:
        created = await conn.fetchval(
            """INSERT INTO pageperfect_batches (id, source, concurrency, total, options, webhook_url, workflow_id,
                                               run_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING true""",
            batch_id,
            source,
            concurrency,
            len(items),
            options,
            webhook_url,
            workflow_id,
            run_id,
        )
        if created:
            await conn.executemany(
                """INSERT INTO pageperfect_batch_items (batch_id, position, url, keyword_set_id, error)
                   VALUES ($1, $2, $3, $4, $5)""",
                [(batch_id, i, url, set_id, error) for i, (url, set_id, error) in enumerate(items)],
            )
        return await conn.fetchval("SELECT total FROM pageperfect_batches WHERE id = $1", batch_id)


async def set_batch_run(conn: Conn, batch_id: str, workflow_id: str, run_id: str) -> None:
    await conn.execute(
        "UPDATE pageperfect_batches SET workflow_id = $2, run_id = $3, updated_at = now() WHERE id = $1",
        batch_id,
        workflow_id,
        run_id,
    )


async def delete_batch(conn: Conn, batch_id: str) -> None:
    await conn.execute("DELETE FROM pageperfect_batches WHERE id = $1", batch_id)


async def get_batch(conn: Conn, batch_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM pageperfect_batches WHERE id = $1", batch_id)


async def list_batches(conn: Conn, limit: int = 50) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM pageperfect_batches ORDER BY created_at DESC LIMIT $1", limit)


async def get_batch_item(conn: Conn, batch_id: str, position: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM pageperfect_batch_items WHERE batch_id = $1 AND position = $2", batch_id, position
    )


async def reject_batch_item(conn: Conn, batch_id: str, position: int, error: str) -> None:
    await conn.execute(
        """UPDATE pageperfect_batch_items SET error = $3, updated_at = now()
           WHERE batch_id = $1 AND position = $2""",
        batch_id,
        position,
        error,
    )


async def insert_batch_job(
    conn: Conn, batch_id: str, position: int, job: JobInput, payload: dict, workflow_id: str
) -> bool:
    """The job row of a batch's page, and the page's link to it: both or neither.

    False (nothing stored) once the batch is no longer running: the batch row's lock orders
    this against close_batch, so a cancelled batch never gains a job it will not start.
    """
    async with transaction(conn) as conn:
        status = await conn.fetchval("SELECT status FROM pageperfect_batches WHERE id = $1 FOR SHARE", batch_id)
        if status != BatchStatus.RUNNING:
            return False
        await insert_job(conn, job, payload, workflow_id)
        await conn.execute(
            """UPDATE pageperfect_batch_items SET job_id = $3, existing = false, updated_at = now()
               WHERE batch_id = $1 AND position = $2""",
            batch_id,
            position,
            job.job_id,
        )
        return True


async def link_running_job(conn: Conn, batch_id: str, position: int, own_job_id: str, workflow_id: str) -> str | None:
    """Points the batch's page at the page's running job and drops the job the batch had made for it.

    None (and nothing changed) when no other job of that workflow id is open any more.
    """
    async with transaction(conn) as conn:
        running = await conn.fetchval(
            """SELECT id FROM pageperfect_jobs
               WHERE workflow_id = $1 AND id <> $2 AND status IN ('queued', 'processing')
               ORDER BY created_at DESC LIMIT 1""",
            workflow_id,
            own_job_id,
        )
        if running is None:
            return None
        await conn.execute(
            """UPDATE pageperfect_batch_items SET job_id = $3, existing = true, updated_at = now()
               WHERE batch_id = $1 AND position = $2""",
            batch_id,
            position,
            running,
        )
        await conn.execute("DELETE FROM pageperfect_jobs WHERE id = $1", own_job_id)
        return str(running)


async def job_status(conn: Conn, job_id: str) -> str | None:
    return await conn.fetchval("SELECT status FROM pageperfect_jobs WHERE id = $1", job_id)


async def batch_counts(conn: Conn, batch_id: str) -> dict[str, int]:
    """Pages of the batch by where they are: not started, their job's status, or refused."""
    rows = await conn.fetch(
        f"""SELECT {_BATCH_PAGE_STATUS_SQL} AS state, count(*) AS n
           FROM pageperfect_batch_items i
           JOIN pageperfect_batches b ON b.id = i.batch_id
           LEFT JOIN pageperfect_jobs j ON j.id = i.job_id
           WHERE i.batch_id = $1
           GROUP BY 1""",
        batch_id,
    )
    counts = dict.fromkeys(BATCH_COUNT_KEYS, 0)
    counts.update({r["state"]: r["n"] for r in rows})
    return counts


async def batch_items(conn: Conn, batch_id: str) -> list[asyncpg.Record]:
    """Every page of the batch (at most MAX_BATCH_PAGES), in order, with its status (BatchPageStatus)."""
    return await conn.fetch(
        f"""SELECT i.position, i.url, i.job_id, i.existing, i.error, {_BATCH_PAGE_STATUS_SQL} AS status, j.stage,
                  j.error AS job_error
           FROM pageperfect_batch_items i
           JOIN pageperfect_batches b ON b.id = i.batch_id
           LEFT JOIN pageperfect_jobs j ON j.id = i.job_id
           WHERE i.batch_id = $1 ORDER BY i.position""",
        batch_id,
    )


async def close_batch(conn: Conn, batch_id: str, status: str) -> None:
    """The batch's final status; when cancelled, the jobs it made but never started end cancelled too."""
    async with transaction(conn) as conn:
        await conn.execute(
            """UPDATE pageperfect_batches SET status = $2, completed_at = coalesce(completed_at, now()),
                      updated_at = now()
               WHERE id = $1""",
            batch_id,
            status,
        )
        if status == BatchStatus.CANCELLED:
            await conn.execute(
                """UPDATE pageperfect_jobs j SET status = 'cancelled', updated_at = now(), completed_at = now(),
                          error = 'the batch was cancelled before this job started'
                   FROM pageperfect_batch_items i
                   WHERE i.batch_id = $1 AND i.job_id = j.id AND NOT i.existing
                     AND j.status = 'queued' AND j.run_id IS NULL""",
                batch_id,
            )


# ---------------------------------------------------------------- retention (pageperfect prune)

# Artifact table -> its rows' child table (deleted with them), and the artifact tables whose rows
# point at it (a row still pointed at stays). In the order they are pruned: readers first.
_ARTIFACT_ROWS = {
    "crawls": None,
    "segment_sets": "segments",
    "cluster_sets": "clusters",
    "gap_reports": "gaps",
    "draft_sets": "drafts",
}
_POINTED_AT_BY = {
    "draft_sets": [],
    "gap_reports": [("draft_sets", "gap_report_id")],
    "cluster_sets": [("gap_reports", "cluster_set_id")],
    "segment_sets": [("gap_reports", "segment_set_id")],
    "crawls": [("segment_sets", "crawl_id")],
}
_CHILD_KEY = {
    "segments": "segment_set_id",
    "clusters": "cluster_set_id",
    "gaps": "gap_report_id",
    "drafts": "draft_set_id",
}
# Pages with a job that has not ended: nothing of theirs goes, whatever its age (the job may reuse it).
_BUSY_PAGES = "SELECT page_id FROM pageperfect_jobs WHERE status IN ('queued', 'processing')"


async def prune_artifacts(conn: asyncpg.Connection | PoolConnectionProxy, cutoff: datetime) -> dict[str, int]:
    """Delete what is older than `cutoff` and nothing needs; returns the rows deleted per table.

    Kept whatever its age: everything of a page whose job is queued or running; each page's latest
    artifact of each stage, and the latest stage output per page and stage (what a job that skips
    the stage reads); what a kept stage output or a kept artifact points at (a gap report's segment
    and cluster sets, a segment set's crawl); a keyword set that a cluster set or a running batch
    uses, and each page's latest. Embedding cache rows go when no job has read them since `cutoff`.
    Run it inside a transaction: rolled back, it is a dry run that counts exactly what would go.
    """
    removed: dict[str, int] = {}
    removed["stage_outputs"] = await conn.fetchval(
        f"""WITH latest AS (SELECT DISTINCT ON (page_id, stage) id FROM stage_outputs
                            ORDER BY page_id, stage, created_at DESC, id DESC),
                 gone AS (DELETE FROM stage_outputs s WHERE s.created_at < $1
                            AND s.id NOT IN (SELECT id FROM latest) AND s.page_id NOT IN ({_BUSY_PAGES})
                          RETURNING 1)
            SELECT count(*) FROM gone""",
        cutoff,
    )
    for table in ("draft_sets", "gap_reports", "cluster_sets", "segment_sets", "crawls"):
        stages = [stage for stage, stored in STAGE_ARTIFACTS.items() if stored == table]
        pointed = "".join(
            f" AND t.id NOT IN (SELECT {column} FROM {reader})" for reader, column in _POINTED_AT_BY[table]
        )
        child = _ARTIFACT_ROWS[table]
        counted = (
            f", (SELECT count(*) FROM {child} WHERE {_CHILD_KEY[child]} IN (SELECT id FROM gone))" if child else ", 0"
        )
        row = await conn.fetchrow(
            f"""WITH gone AS (
                    DELETE FROM {table} t WHERE t.created_at < $1
                      AND t.page_id NOT IN ({_BUSY_PAGES})
                      AND t.id <> (SELECT max(x.id) FROM {table} x WHERE x.page_id = t.page_id)
                      AND t.id NOT IN (SELECT (summary->>'artifact_id')::bigint FROM stage_outputs
                                       WHERE stage = ANY($2::text[]) AND summary->>'artifact_id' IS NOT NULL)
                      {pointed}
                    RETURNING t.id)
                SELECT (SELECT count(*) FROM gone){counted}""",
            cutoff,
            stages,
        )
        assert row is not None
        removed[table] = row[0]
        if child:
            removed[child] = row[1]
    # Keyword sets: a closed batch's pages have their jobs, and no longer need the set they started with.
    keyword_sets = f"""SELECT k.id FROM keyword_sets k WHERE k.created_at < $1
                         AND k.page_id NOT IN ({_BUSY_PAGES})
                         AND k.id <> (SELECT max(x.id) FROM keyword_sets x WHERE x.page_id = k.page_id)
                         AND k.id NOT IN (SELECT keyword_set_id FROM cluster_sets WHERE keyword_set_id IS NOT NULL)
                         AND k.id NOT IN (SELECT i.keyword_set_id FROM pageperfect_batch_items i
                                          JOIN pageperfect_batches b ON b.id = i.batch_id
                                          WHERE b.status = 'running' AND i.keyword_set_id IS NOT NULL)"""
    await conn.execute(
        f"UPDATE pageperfect_batch_items SET keyword_set_id = NULL WHERE keyword_set_id IN ({keyword_sets})", cutoff
    )
    row = await conn.fetchrow(
        f"""WITH gone AS (DELETE FROM keyword_sets WHERE id IN ({keyword_sets}) RETURNING id)
            SELECT (SELECT count(*) FROM gone),
                   (SELECT count(*) FROM keywords WHERE keyword_set_id IN (SELECT id FROM gone))""",
        cutoff,
    )
    assert row is not None
    removed["keyword_sets"], removed["keywords"] = row[0], row[1]
    removed["embedding_cache"] = await conn.fetchval(
        """WITH gone AS (DELETE FROM embedding_cache WHERE used_at < $1 RETURNING 1) SELECT count(*) FROM gone""",
        cutoff,
    )
    return removed


# ---------------------------------------------------------------- sites (docs/SITE.md)


async def insert_site(
    conn: Conn, site_id: str, *, batch_id: str, source: str, pages: int, options: dict, workflow_id: str
) -> None:
    await conn.execute(
        """INSERT INTO pageperfect_sites (id, batch_id, source, pages, options, workflow_id, stage)
           VALUES ($1, $2, $3, $4, $5, $6, 'pages')""",
        site_id,
        batch_id,
        source,
        pages,
        options,
        workflow_id,
    )


async def set_site_run(conn: Conn, site_id: str, run_id: str) -> None:
    await conn.execute("UPDATE pageperfect_sites SET run_id = $2, updated_at = now() WHERE id = $1", site_id, run_id)


async def delete_site(conn: Conn, site_id: str) -> None:
    await conn.execute("DELETE FROM pageperfect_sites WHERE id = $1", site_id)


async def get_site(conn: Conn, site_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM pageperfect_sites WHERE id = $1", site_id)


async def set_site_stage(conn: Conn, site_id: str, stage: str) -> None:
    await conn.execute(
        "UPDATE pageperfect_sites SET stage = $2, updated_at = now() WHERE id = $1 AND status = 'running'",
        site_id,
        stage,
    )


async def site_jobs(conn: Conn, site_id: str) -> list[asyncpg.Record]:
    """The site's pages with their jobs (from its batch), in the batch's order."""
    return await conn.fetch(
        """SELECT i.position, i.url, i.job_id, j.status, j.page_id, j.result, j.payload
           FROM pageperfect_sites s
           JOIN pageperfect_batch_items i ON i.batch_id = s.batch_id
           LEFT JOIN pageperfect_jobs j ON j.id = i.job_id
           WHERE s.id = $1 ORDER BY i.position""",
        site_id,
    )


async def store_site_result(conn: Conn, site_id: str, result: Any) -> None:
    """The site stage's findings (an analysis.site.SiteResult), replacing any of an earlier attempt."""
    async with transaction(conn) as conn:
        for table in (
            "pageperfect_site_links",
            "pageperfect_site_cases",
            "pageperfect_site_pages",
            "pageperfect_site_intent_pages",
        ):  # fixed names; case pages go with their cases
            await conn.execute(f"DELETE FROM {table} WHERE site_id = $1", site_id)
        await conn.executemany(
            """INSERT INTO pageperfect_site_pages (site_id, rank, url, job_id, coverage, queries, impressions, gaps,
                                                   opportunity, top_gaps)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            [
                (
                    site_id,
                    rank,
                    p["url"],
                    p["job_id"],
                    p["coverage"],
                    p["queries"],
                    p["impressions"],
                    p["gaps"],
                    p["opportunity"],
                    p["top_gaps"],
                )
                for rank, p in enumerate(result.pages)
            ],
        )
        await conn.executemany(
            """INSERT INTO pageperfect_site_cases (site_id, case_id, intent, queries, total_impressions, evenness,
                                                   severity, recommendation, reasons)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    site_id,
                    i,
                    c["intent"],
                    c["queries"],
                    c["total_impressions"],
                    c["evenness"],
                    c["severity"],
                    c["recommendation"],
                    c["reasons"],
                )
                for i, c in enumerate(result.cannibalization)
            ],
        )
        await conn.executemany(
            """INSERT INTO pageperfect_site_case_pages (site_id, case_id, position, url, job_id, impressions, clicks,
                   position_avg, impression_share, click_share, queries, passage, passage_cosine)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            [
                (
                    site_id,
                    i,
                    n,
                    p["url"],
                    p["job_id"],
                    p["impressions"],
                    p["clicks"],
                    p["position"],
                    p["impression_share"],
                    p["click_share"],
                    p["queries"],
                    p["passage"],
                    p["passage_cosine"],
                )
                for i, c in enumerate(result.cannibalization)
                for n, p in enumerate(c["pages"])
            ],
        )
        await conn.executemany(
            """INSERT INTO pageperfect_site_links (site_id, link_id, from_url, from_job_id, cluster_id, intent,
                   queries, to_url, to_job_id, to_segment_id, anchor_text, passage, coverage, original_score, score,
                   reason, brief)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)""",
            [
                (
                    site_id,
                    i,
                    x["from_url"],
                    x["from_job_id"],
                    x["cluster_id"],
                    x["intent"],
                    x["queries"],
                    x["to_url"],
                    x["to_job_id"],
                    x["to_segment_id"],
                    x["anchor_text"],
                    x["passage"],
                    x["coverage"],
                    x["original_score"],
                    x["score"],
                    x["reason"],
                    x["brief"],
                )
                for i, x in enumerate(result.links)
            ],
        )
        await conn.executemany(
            """INSERT INTO pageperfect_site_intent_pages (site_id, intent_id, intent, url, impressions)
               VALUES ($1, $2, $3, $4, $5)""",
            [
                (site_id, i["intent_id"], i["intent"], url, impressions)
                for i in result.intents
                for url, impressions in i["pages"].items()
            ],
        )
        await conn.execute(
            "UPDATE pageperfect_sites SET stats = $2, updated_at = now() WHERE id = $1", site_id, result.stats
        )


async def site_result_rows(conn: Conn, site_id: str) -> dict[str, list[asyncpg.Record]]:
    return {
        "pages": await conn.fetch("SELECT * FROM pageperfect_site_pages WHERE site_id = $1 ORDER BY rank", site_id),
        "cases": await conn.fetch("SELECT * FROM pageperfect_site_cases WHERE site_id = $1 ORDER BY case_id", site_id),
        "case_pages": await conn.fetch(
            "SELECT * FROM pageperfect_site_case_pages WHERE site_id = $1 ORDER BY case_id, position", site_id
        ),
        "links": await conn.fetch("SELECT * FROM pageperfect_site_links WHERE site_id = $1 ORDER BY link_id", site_id),
        "intents": await conn.fetch(
            "SELECT * FROM pageperfect_site_intent_pages WHERE site_id = $1 ORDER BY intent_id, url", site_id
        ),
    }


async def finalize_site(
    conn: Conn, *, site_id: str, status: str, stage: str | None, error: str | None, workflow_id: str, run_id: str
) -> None:
    """The site's final row and, for a failure, its dead letter, in one transaction; idempotent."""
    async with transaction(conn) as conn:
        await conn.execute(
            """UPDATE pageperfect_sites SET status = $2, error = $3, completed_at = coalesce(completed_at, now()),
                      updated_at = now(), stage = coalesce($4, stage)
               WHERE id = $1""",
            site_id,
            status,
            error,
            stage,
        )
        if status == BatchStatus.FAILED:
            await conn.execute(
                """INSERT INTO pageperfect_site_dead_letters (site_id, workflow_id, run_id, stage, failure_reason,
                                                              error_details)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workflow_id, run_id) DO NOTHING""",
                site_id,
                workflow_id,
                run_id,
                stage,
                (error or "failed").split("\n")[0][:500],
                error,
            )


async def mirror_site_stage(
    conn: Conn,
    *,
    site_id: str,
    stage: str,
    status: str,
    attempt: int,
    started_at: datetime,
    completed_at: datetime | None,
    duration_ms: float | None,
    last_error: str | None,
) -> None:
    """A site stage attempt's row; moves forward only (a later attempt, or a later status of the same one)."""
    await conn.execute(
        f"""INSERT INTO pageperfect_site_stages AS s (site_id, stage, status, attempt_count, started_at, completed_at,
                                                     duration_ms, last_error)
           SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM pageperfect_sites WHERE id = $1)
           ON CONFLICT (site_id, stage) DO UPDATE SET status = EXCLUDED.status,
               attempt_count = EXCLUDED.attempt_count, started_at = EXCLUDED.started_at,
               completed_at = EXCLUDED.completed_at, duration_ms = EXCLUDED.duration_ms,
               last_error = coalesce(EXCLUDED.last_error, s.last_error), updated_at = now()
           WHERE EXCLUDED.attempt_count > s.attempt_count
              OR (EXCLUDED.attempt_count = s.attempt_count
                  AND {_STATUS_RANK_SQL.format(col="EXCLUDED.status")} >= {_STATUS_RANK_SQL.format(col="s.status")})""",
        site_id,
        stage,
        status,
        attempt,
        started_at,
        completed_at,
        duration_ms,
        last_error,
    )


async def site_gsc_rows(
    conn: Conn, page_prefix: str | None, host: str | None, date_range: str
) -> dict[str, list[KeywordRow]]:
    """A Search Console property's imported rows for one date range ("start/end"), grouped by page URL:
    pages under a URL-prefix property, or on a domain property's host and its subdomains."""
    rows = await conn.fetch(
        """SELECT page_url, query, clicks, impressions, ctr, position FROM gsc_keywords
           WHERE date_range = $3
             AND (($1::text IS NOT NULL AND starts_with(page_url, $1))
                  OR ($2::text IS NOT NULL AND (substring(page_url from '^[a-z]+://([^/:]+)') = $2
                                                OR substring(page_url from '^[a-z]+://([^/:]+)') LIKE '%.' || $2)))
           ORDER BY page_url, impressions DESC""",
        page_prefix,
        host,
        date_range,
    )
    out: dict[str, list[KeywordRow]] = {}
    for r in rows:
        out.setdefault(r["page_url"], []).append(
            KeywordRow.model_construct(
                query=r["query"], clicks=r["clicks"], impressions=r["impressions"], ctr=r["ctr"], position=r["position"]
            )
        )
    return out
