-- Batches: many pages analyzed with a bounded number of jobs running at once.
-- One row per page of the batch; its job is the one the batch started, or the
-- page's job that was already running when the batch came to it.
CREATE TABLE pageperfect_batches (
    id          UUID PRIMARY KEY,
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'cancelled', 'failed')),
    source      TEXT NOT NULL DEFAULT 'api',
    concurrency INTEGER NOT NULL,
    total       INTEGER NOT NULL DEFAULT 0,
    options     JSONB NOT NULL DEFAULT '{}',
    webhook_url TEXT,
    workflow_id TEXT,
    run_id      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ
);
CREATE INDEX pageperfect_batches_created_idx ON pageperfect_batches (created_at DESC);

CREATE TABLE pageperfect_batch_items (
    batch_id       UUID NOT NULL REFERENCES pageperfect_batches(id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    url            TEXT NOT NULL,
    keyword_set_id BIGINT REFERENCES keyword_sets(id),
    job_id         UUID REFERENCES pageperfect_jobs(id) ON DELETE SET NULL,
    existing       BOOLEAN NOT NULL DEFAULT false,  -- the page's running job, not one the batch started
    error          TEXT,                            -- why the page was refused (no job was made)
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, position)
);
CREATE INDEX pageperfect_batch_items_job_idx ON pageperfect_batch_items (job_id);
