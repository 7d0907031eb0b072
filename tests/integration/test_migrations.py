"""Migrations against data written before them: nothing stored is lost or changed."""

from __future__ import annotations

import uuid

import asyncpg
import numpy as np
import pytest

from db import migrate as migrations
from db import queries


@pytest.fixture
async def fresh_database(postgres_dsn):
    admin = await asyncpg.connect(postgres_dsn)
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        await admin.close()
        pytest.skip("DATABASE_URL's role may not create databases")
    conn = await asyncpg.connect(postgres_dsn, database=name)
    try:
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


async def test_vectors_stored_as_real_arrays_read_back_the_same_after_004(fresh_database, monkeypatch):
    conn = fresh_database
    every = migrations.migration_files()
    monkeypatch.setattr(migrations, "migration_files", lambda: [(v, p) for v, p in every if v < 4])
    await migrations.migrate(conn)
    rng = np.random.default_rng(7)
    segment = rng.normal(size=2048).astype(np.float32)
    cached = np.array([1.5, -0.0, 3.4028235e38, 1e-45, -2.25], dtype=np.float32)  # extremes survive too
    centroid = rng.normal(size=1536).astype(np.float32)
    page_id = await conn.fetchval("INSERT INTO pages (url) VALUES ('https://example.com/a') RETURNING id")
    crawl_id = await conn.fetchval(
        "INSERT INTO crawls (page_id, provider, status, requested_url)"
        " VALUES ($1, 'direct', 'fetched', 'x') RETURNING id",
        page_id,
    )
    segment_set = await conn.fetchval(
        """INSERT INTO segment_sets (page_id, crawl_id, extractor, embedding_provider, embedding_model)
           VALUES ($1, $2, 'trafilatura', 'hashing', 'm') RETURNING id""",
        page_id,
        crawl_id,
    )
    await conn.execute(
        """INSERT INTO segments (segment_set_id, segment_id, position, kind, heading_level, heading_path, text,
                                 embedding)
           VALUES ($1, 's1', 0, 'section', 2, '{}', 'text', $2)""",
        segment_set,
        segment.tolist(),
    )
    await conn.execute(
        "INSERT INTO segments (segment_set_id, segment_id, position, kind, heading_level, heading_path, text,"
        " embedding) VALUES ($1, 's2', 1, 'section', 2, '{}', 'empty', '{}')",
        segment_set,
    )
    await conn.execute(
        "INSERT INTO embedding_cache (provider, model, text_hash, embedding) VALUES ('p', 'm', 'h', $1)",
        cached.tolist(),
    )
    cluster_set = await conn.fetchval(
        """INSERT INTO cluster_sets (page_id, embedding_provider, embedding_model, eps, min_samples, keyword_count)
           VALUES ($1, 'hashing', 'm', 0.2, 2, 1) RETURNING id""",
        page_id,
    )
    await conn.execute(
        """INSERT INTO clusters (cluster_set_id, cluster_id, representative, keywords, size, total_impressions,
                                 avg_impressions, total_clicks, avg_position, centroid)
           VALUES ($1, 0, 'q', '{q}', 1, 1, 1, 0, 3, $2)""",
        cluster_set,
        centroid.tolist(),
    )

    monkeypatch.setattr(migrations, "migration_files", lambda: every)
    assert "004_vectors_as_bytes.sql" in await migrations.migrate(conn)

    stored = await conn.fetch("SELECT segment_id, embedding FROM segments ORDER BY position")
    assert np.array_equal(queries.unpack_vector(stored[0]["embedding"]), segment)
    assert queries.unpack_vector(stored[1]["embedding"]).shape == (0,)
    cache_row = await conn.fetchval("SELECT embedding FROM embedding_cache")
    assert np.array_equal(queries.unpack_vector(cache_row), cached)
    assert np.signbit(queries.unpack_vector(cache_row)[1])  # -0.0 kept its sign
    assert np.array_equal(queries.unpack_vector(await conn.fetchval("SELECT centroid FROM clusters")), centroid)
    # Written after the migration by the application's own helpers: the same bytes as converted ones.
    assert queries.pack_vector(segment) == stored[0]["embedding"]


def test_packed_vectors_round_trip():
    matrix = np.random.default_rng(3).normal(size=(5, 7)).astype(np.float32)
    packed = queries.pack_vectors(matrix)
    assert [len(p) for p in packed] == [28] * 5
    assert np.array_equal(queries.unpack_vectors(packed), matrix)
    assert queries.unpack_vectors([]).shape == (0, 1)
    assert np.array_equal(queries.unpack_vector(queries.pack_vector([0.5, 2])), np.array([0.5, 2], dtype=np.float32))
