-- Search intents and coverage from several signals (docs/CALIBRATION.md).
-- A cluster set says how it grouped its queries and which words it took for the page's subject;
-- a gap says how sure the analysis is that the page answers it, what decided, and why.

ALTER TABLE cluster_sets
    ADD COLUMN method TEXT NOT NULL DEFAULT 'dbscan',
    ADD COLUMN params JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN subject TEXT[] NOT NULL DEFAULT '{}';

ALTER TABLE gaps
    ADD COLUMN size INTEGER,
    ADD COLUMN coverage DOUBLE PRECISION,
    ADD COLUMN decided_by TEXT NOT NULL DEFAULT 'similarity',
    ADD COLUMN explanation JSONB NOT NULL DEFAULT '{}';

ALTER TABLE gap_reports ADD COLUMN method TEXT NOT NULL DEFAULT 'similarity';

-- The chat model's answers on coverage, keyed by a hash of the model, the prompt version and the prompt.
CREATE TABLE llm_judgements (
    prompt_hash TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    status      TEXT NOT NULL,
    quote       TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
