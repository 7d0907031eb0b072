-- Retention (`pageperfect prune`): when a cached embedding was last read, so that rows no job has
-- read for the retention period can go. A read moves it on at most once a day; rows cached before
-- this migration count as read now.
ALTER TABLE embedding_cache ADD COLUMN used_at TIMESTAMPTZ NOT NULL DEFAULT now();
