-- PagePerfect schema: the operators' mirror tables (names and columns kept from
-- the queue-and-worker system so its dashboards run unchanged) and the analysis data.

CREATE TABLE pages (
    id               BIGSERIAL PRIMARY KEY,
    url              TEXT NOT NULL UNIQUE,
    title            TEXT,
    meta_description TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE pageperfect_jobs (
    id                  UUID PRIMARY KEY,
    page_id             BIGINT NOT NULL REFERENCES pages(id),
    url                 TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    stage               TEXT,
    priority            INTEGER NOT NULL DEFAULT 0,
    payload             JSONB NOT NULL DEFAULT '{}',
    result              JSONB,
    error               TEXT,
    max_attempts        INTEGER,
    attempt_count       INTEGER NOT NULL DEFAULT 0,
    retry_delay_seconds DOUBLE PRECISION,
    workflow_id         TEXT,
    run_id              TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ
);
CREATE INDEX pageperfect_jobs_status_idx ON pageperfect_jobs (status, created_at DESC);
CREATE INDEX pageperfect_jobs_page_idx ON pageperfect_jobs (page_id, created_at DESC);
CREATE INDEX pageperfect_jobs_run_idx ON pageperfect_jobs (workflow_id, run_id);

CREATE TABLE pageperfect_job_stages (
    job_id        UUID NOT NULL REFERENCES pageperfect_jobs(id) ON DELETE CASCADE,
    stage         TEXT NOT NULL,
    position      INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'retrying', 'completed', 'failed', 'cancelled', 'skipped')),
    attempt_count INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER,
    reused        BOOLEAN NOT NULL DEFAULT false,
    started_at    TIMESTAMPTZ,
    completed_at  TIMESTAMPTZ,
    duration_ms   DOUBLE PRECISION,
    last_error    TEXT,
    next_retry_at TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage)
);
CREATE INDEX pageperfect_job_stages_status_idx ON pageperfect_job_stages (stage, status);

CREATE TABLE pageperfect_job_events (
    id          BIGSERIAL PRIMARY KEY,
    job_id      UUID NOT NULL REFERENCES pageperfect_jobs(id) ON DELETE CASCADE,
    stage       TEXT,
    status      TEXT NOT NULL,
    message     TEXT,
    metadata    JSONB NOT NULL DEFAULT '{}',
    workflow_id TEXT NOT NULL DEFAULT '',
    run_id      TEXT NOT NULL DEFAULT '',
    activity_id TEXT NOT NULL DEFAULT '',
    attempt     INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- replays and duplicate deliveries insert nothing twice
    UNIQUE (workflow_id, run_id, activity_id, attempt, status)
);
CREATE INDEX pageperfect_job_events_job_idx ON pageperfect_job_events (job_id, created_at);
CREATE INDEX pageperfect_job_events_time_idx ON pageperfect_job_events (created_at DESC);

CREATE TABLE pageperfect_dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    job_id         UUID NOT NULL REFERENCES pageperfect_jobs(id) ON DELETE CASCADE,
    workflow_id    TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    stage          TEXT,
    payload        JSONB NOT NULL DEFAULT '{}',
    failure_reason TEXT NOT NULL,
    error_details  TEXT,
    attempt_count  INTEGER NOT NULL DEFAULT 0,
    routed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    redriven_at    TIMESTAMPTZ,
    redrive_job_id UUID,
    UNIQUE (workflow_id, run_id)
);

CREATE VIEW v_pageperfect_job_status AS
SELECT j.id AS job_id, j.page_id, j.url, j.status, j.stage, j.priority,
       j.attempt_count, j.max_attempts, j.error, j.workflow_id, j.run_id,
       j.created_at, j.updated_at, j.started_at, j.completed_at,
       count(s.stage) FILTER (WHERE s.status = 'completed') AS stages_completed,
       count(s.stage) AS stages_total,
       EXTRACT(EPOCH FROM (coalesce(j.completed_at, now()) - j.created_at)) AS age_seconds
FROM pageperfect_jobs j
LEFT JOIN pageperfect_job_stages s ON s.job_id = j.id
GROUP BY j.id;

-- Ready: a stage whose job is running and whose turn has not come; in flight: running now;
-- retrying: waiting for its next attempt.
CREATE FUNCTION get_pageperfect_stage_backlog()
RETURNS TABLE (stage TEXT, ready BIGINT, in_flight BIGINT, retrying BIGINT, oldest_waiting TIMESTAMPTZ)
LANGUAGE sql STABLE AS $$
    SELECT s.stage,
           count(*) FILTER (WHERE s.status = 'pending'),
           count(*) FILTER (WHERE s.status = 'processing'),
           count(*) FILTER (WHERE s.status = 'retrying'),
           min(s.created_at) FILTER (WHERE s.status IN ('pending', 'retrying'))
    FROM pageperfect_job_stages s
    JOIN pageperfect_jobs j ON j.id = s.job_id
    WHERE j.status IN ('queued', 'processing')
    GROUP BY s.stage
    ORDER BY min(s.position)
$$;

-- Analysis data. Large things live here; workflow history carries only these ids.

CREATE TABLE keyword_sets (
    id         BIGSERIAL PRIMARY KEY,
    page_id    BIGINT NOT NULL REFERENCES pages(id),
    source     TEXT NOT NULL,
    date_range TEXT,
    row_count  INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE keywords (
    keyword_set_id BIGINT NOT NULL REFERENCES keyword_sets(id) ON DELETE CASCADE,
    query       TEXT NOT NULL,
    clicks      DOUBLE PRECISION NOT NULL,
    impressions DOUBLE PRECISION NOT NULL,
    ctr         DOUBLE PRECISION NOT NULL,
    position    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (keyword_set_id, query)
);

-- Search Console imports, one row per (date range, page, query).
CREATE TABLE gsc_keywords (
    page_url    TEXT NOT NULL,
    date_range  TEXT NOT NULL DEFAULT '',
    query       TEXT NOT NULL,
    clicks      DOUBLE PRECISION NOT NULL,
    impressions DOUBLE PRECISION NOT NULL,
    ctr         DOUBLE PRECISION NOT NULL,
    position    DOUBLE PRECISION NOT NULL,
    source      TEXT NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (page_url, date_range, query)
);

CREATE TABLE crawls (
    id            BIGSERIAL PRIMARY KEY,
    page_id       BIGINT NOT NULL REFERENCES pages(id),
    job_id        UUID,
    provider      TEXT NOT NULL,
    external_id   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('submitted', 'fetched')),
    requested_url TEXT NOT NULL,
    final_url     TEXT,
    http_status   INTEGER,
    content_type  TEXT,
    encoding      TEXT,
    html          TEXT,
    bytes         INTEGER,
    redirects     JSONB NOT NULL DEFAULT '[]',
    fetched_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE segment_sets (
    id                 BIGSERIAL PRIMARY KEY,
    page_id            BIGINT NOT NULL REFERENCES pages(id),
    crawl_id           BIGINT NOT NULL REFERENCES crawls(id),
    job_id             UUID,
    extractor          TEXT NOT NULL,
    embedding_provider TEXT NOT NULL,
    embedding_model    TEXT NOT NULL,
    title              TEXT,
    meta_description   TEXT,
    truncated          BOOLEAN NOT NULL DEFAULT false,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE segments (
    segment_set_id BIGINT NOT NULL REFERENCES segment_sets(id) ON DELETE CASCADE,
    segment_id     TEXT NOT NULL,
    position       INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    heading_level  INTEGER NOT NULL,
    heading_path   TEXT[] NOT NULL,
    text           TEXT NOT NULL,
    embedding      REAL[] NOT NULL,
    PRIMARY KEY (segment_set_id, segment_id)
);

-- Text that has been embedded is never sent again.
CREATE TABLE embedding_cache (
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    text_hash  TEXT NOT NULL,
    embedding  REAL[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, model, text_hash)
);

CREATE TABLE cluster_sets (
    id                 BIGSERIAL PRIMARY KEY,
    page_id            BIGINT NOT NULL REFERENCES pages(id),
    keyword_set_id     BIGINT REFERENCES keyword_sets(id),
    job_id             UUID,
    embedding_provider TEXT NOT NULL,
    embedding_model    TEXT NOT NULL,
    eps                DOUBLE PRECISION NOT NULL,
    min_samples        INTEGER NOT NULL,
    keyword_count      INTEGER NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE clusters (
    cluster_set_id    BIGINT NOT NULL REFERENCES cluster_sets(id) ON DELETE CASCADE,
    cluster_id        INTEGER NOT NULL,
    representative    TEXT NOT NULL,
    keywords          TEXT[] NOT NULL,
    size              INTEGER NOT NULL,
    total_impressions DOUBLE PRECISION NOT NULL,
    avg_impressions   DOUBLE PRECISION NOT NULL,
    total_clicks      DOUBLE PRECISION NOT NULL,
    avg_position      DOUBLE PRECISION NOT NULL,
    centroid          REAL[] NOT NULL,
    PRIMARY KEY (cluster_set_id, cluster_id)
);

CREATE TABLE gap_reports (
    id             BIGSERIAL PRIMARY KEY,
    page_id        BIGINT NOT NULL REFERENCES pages(id),
    job_id         UUID,
    cluster_set_id BIGINT NOT NULL REFERENCES cluster_sets(id),
    segment_set_id BIGINT NOT NULL REFERENCES segment_sets(id),
    threshold      DOUBLE PRECISION NOT NULL,
    score          TEXT NOT NULL,
    coverage_score DOUBLE PRECISION NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE gaps (
    gap_report_id     BIGINT NOT NULL REFERENCES gap_reports(id) ON DELETE CASCADE,
    rank              INTEGER NOT NULL,
    cluster_id        INTEGER NOT NULL,
    representative    TEXT NOT NULL,
    keywords          TEXT[] NOT NULL,
    total_impressions DOUBLE PRECISION NOT NULL,
    avg_position      DOUBLE PRECISION NOT NULL,
    has_gap           BOOLEAN NOT NULL,
    opportunity_score DOUBLE PRECISION NOT NULL,
    best_match        JSONB,
    top_matches       JSONB NOT NULL DEFAULT '[]',
    PRIMARY KEY (gap_report_id, cluster_id)
);

CREATE TABLE draft_sets (
    id            BIGSERIAL PRIMARY KEY,
    page_id       BIGINT NOT NULL REFERENCES pages(id),
    job_id        UUID,
    gap_report_id BIGINT NOT NULL REFERENCES gap_reports(id),
    llm_provider  TEXT NOT NULL,
    llm_model     TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE drafts (
    draft_set_id      BIGINT NOT NULL REFERENCES draft_sets(id) ON DELETE CASCADE,
    cluster_id        INTEGER NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('draft', 'brief')),
    action            TEXT NOT NULL,
    target_segment_id TEXT,
    suggested_heading TEXT,
    original          TEXT NOT NULL,
    draft             TEXT NOT NULL,
    diff              TEXT NOT NULL,
    model             TEXT,
    prompt_version    TEXT NOT NULL,
    PRIMARY KEY (draft_set_id, cluster_id)
);

-- A stage's output per page and input fingerprint, for reuse inside the window.
CREATE TABLE stage_outputs (
    id          BIGSERIAL PRIMARY KEY,
    page_id     BIGINT NOT NULL REFERENCES pages(id),
    stage       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    job_id      UUID,
    summary     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stage_outputs_lookup_idx ON stage_outputs (page_id, stage, fingerprint, created_at DESC);
CREATE INDEX stage_outputs_latest_idx ON stage_outputs (page_id, stage, created_at DESC);
