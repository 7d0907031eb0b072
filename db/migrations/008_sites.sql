-- Site analyses (docs/SITE.md): a batch of page jobs, then one site stage over their stored results.
-- The site's rows say where it is (status, stage), what its stage attempts did (mirrored like a job's
-- stages), and what it found: pages by opportunity, cannibalization cases with their pages, links
-- instead of duplicate sections, and the intents x pages matrix. A failed site gets a dead letter.

CREATE TABLE pageperfect_sites (
    id           UUID PRIMARY KEY,
    status       TEXT NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    stage        TEXT,                      -- 'pages' (the batch runs) or 'site_analysis'
    source       TEXT NOT NULL DEFAULT 'api',
    batch_id     UUID REFERENCES pageperfect_batches(id) ON DELETE SET NULL,
    pages        INTEGER NOT NULL DEFAULT 0,
    options      JSONB NOT NULL DEFAULT '{}',
    stats        JSONB NOT NULL DEFAULT '{}',
    error        TEXT,
    workflow_id  TEXT,
    run_id       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ
);
CREATE INDEX pageperfect_sites_created_idx ON pageperfect_sites (created_at DESC);

-- One row per attempt outcome of the site stage, written by the mirror interceptor.
CREATE TABLE pageperfect_site_stages (
    site_id       UUID NOT NULL REFERENCES pageperfect_sites(id) ON DELETE CASCADE,
    stage         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('processing', 'retrying', 'completed', 'failed', 'cancelled')),
    attempt_count INTEGER NOT NULL DEFAULT 0,
    started_at    TIMESTAMPTZ,
    completed_at  TIMESTAMPTZ,
    duration_ms   DOUBLE PRECISION,
    last_error    TEXT,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, stage)
);

CREATE TABLE pageperfect_site_dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    site_id        UUID NOT NULL REFERENCES pageperfect_sites(id) ON DELETE CASCADE,
    workflow_id    TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    stage          TEXT,
    failure_reason TEXT NOT NULL,
    error_details  TEXT,
    routed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workflow_id, run_id)
);

CREATE TABLE pageperfect_site_pages (
    site_id     UUID NOT NULL REFERENCES pageperfect_sites(id) ON DELETE CASCADE,
    rank        INTEGER NOT NULL,
    url         TEXT NOT NULL,
    job_id      UUID,
    coverage    DOUBLE PRECISION,
    queries     INTEGER NOT NULL,
    impressions DOUBLE PRECISION NOT NULL,
    gaps        INTEGER NOT NULL,
    opportunity DOUBLE PRECISION NOT NULL,
    top_gaps    JSONB NOT NULL DEFAULT '[]',
    PRIMARY KEY (site_id, url)
);

CREATE TABLE pageperfect_site_cases (
    site_id           UUID NOT NULL REFERENCES pageperfect_sites(id) ON DELETE CASCADE,
    case_id           INTEGER NOT NULL,         -- rank by severity, 0 first
    intent            TEXT NOT NULL,
    queries           TEXT[] NOT NULL,
    total_impressions DOUBLE PRECISION NOT NULL,
    evenness          DOUBLE PRECISION NOT NULL,
    severity          DOUBLE PRECISION NOT NULL,
    recommendation    TEXT NOT NULL CHECK (recommendation IN ('consolidate', 'differentiate', 'leave_alone')),
    reasons           TEXT[] NOT NULL,
    PRIMARY KEY (site_id, case_id)
);

CREATE TABLE pageperfect_site_case_pages (
    site_id          UUID NOT NULL,
    case_id          INTEGER NOT NULL,
    position         INTEGER NOT NULL,          -- 0: the page that leads the intent
    url              TEXT NOT NULL,
    job_id           UUID,
    impressions      DOUBLE PRECISION NOT NULL,
    clicks           DOUBLE PRECISION NOT NULL,
    position_avg     DOUBLE PRECISION NOT NULL, -- the page's impression-weighted position for the intent
    impression_share DOUBLE PRECISION NOT NULL,
    click_share      DOUBLE PRECISION,
    queries          TEXT[] NOT NULL,
    passage          JSONB,                     -- the page's covering passage
    passage_cosine   DOUBLE PRECISION,          -- against the leader's passage
    PRIMARY KEY (site_id, case_id, position),
    FOREIGN KEY (site_id, case_id) REFERENCES pageperfect_site_cases(site_id, case_id) ON DELETE CASCADE
);

CREATE TABLE pageperfect_site_links (
    site_id        UUID NOT NULL REFERENCES pageperfect_sites(id) ON DELETE CASCADE,
    link_id        INTEGER NOT NULL,
    from_url       TEXT NOT NULL,
    from_job_id    UUID,
    cluster_id     INTEGER NOT NULL,
    intent         TEXT NOT NULL,
    queries        TEXT[] NOT NULL,
    to_url         TEXT NOT NULL,
    to_job_id      UUID,
    to_segment_id  TEXT NOT NULL,
    anchor_text    TEXT NOT NULL,
    passage        TEXT NOT NULL,
    coverage       DOUBLE PRECISION NOT NULL,
    original_score DOUBLE PRECISION NOT NULL,
    score          DOUBLE PRECISION NOT NULL,
    reason         TEXT NOT NULL,
    brief          TEXT NOT NULL,
    PRIMARY KEY (site_id, link_id)
);

-- The intents x pages matrix: impressions per (intent, page) for the intents several pages earn.
CREATE TABLE pageperfect_site_intent_pages (
    site_id     UUID NOT NULL REFERENCES pageperfect_sites(id) ON DELETE CASCADE,
    intent_id   INTEGER NOT NULL,
    intent      TEXT NOT NULL,
    url         TEXT NOT NULL,
    impressions DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site_id, intent_id, url)
);

-- Dashboards: every cannibalization case's page with its site, case and share, one row each.
CREATE VIEW v_pageperfect_site_cannibalization AS
SELECT s.id AS site_id, s.status AS site_status, s.created_at AS site_created_at,
       c.case_id, c.intent, c.severity, c.evenness, c.total_impressions, c.recommendation,
       p.position AS page_rank, p.url, p.job_id, p.impressions, p.clicks, p.position_avg,
       p.impression_share, p.click_share, p.passage_cosine,
       cardinality(c.queries) AS queries
FROM pageperfect_sites s
JOIN pageperfect_site_cases c ON c.site_id = s.id
JOIN pageperfect_site_case_pages p ON p.site_id = c.site_id AND p.case_id = c.case_id;
