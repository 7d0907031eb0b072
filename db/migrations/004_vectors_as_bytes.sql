-- Embeddings and centroids as packed float32 instead of REAL[]: each vector is its elements'
-- big-endian 4-byte values in order (what float4send gives), read with
-- numpy.frombuffer(value, ">f4"). asyncpg converts REAL[] element by element in Python, which
-- took about 30% of a worker's CPU per job (docs/BENCHMARKS.md, orchestration); bytes cost nothing.

CREATE FUNCTION pageperfect_pack_float4(vector real[]) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(string_agg(float4send(element), ''::bytea ORDER BY position), ''::bytea)
    FROM unnest(vector) WITH ORDINALITY AS elements(element, position)
$$;

ALTER TABLE segments ALTER COLUMN embedding TYPE bytea USING pageperfect_pack_float4(embedding);
ALTER TABLE embedding_cache ALTER COLUMN embedding TYPE bytea USING pageperfect_pack_float4(embedding);
ALTER TABLE clusters ALTER COLUMN centroid TYPE bytea USING pageperfect_pack_float4(centroid);

DROP FUNCTION pageperfect_pack_float4(real[]);
