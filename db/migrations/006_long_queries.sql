-- Long queries (Search Console records prompts typed into AI assistants, 1,000 characters and more).
-- A B-tree entry holds at most about 2,700 bytes, so a long query cannot be part of a key as it is:
-- the keys on a query use its md5 instead, and a query of any length is stored whole.
ALTER TABLE keywords DROP CONSTRAINT keywords_pkey;
CREATE UNIQUE INDEX keywords_set_query ON keywords (keyword_set_id, md5(query));

ALTER TABLE gsc_keywords DROP CONSTRAINT gsc_keywords_pkey;
CREATE UNIQUE INDEX gsc_keywords_page_range_query ON gsc_keywords (page_url, date_range, md5(query));

-- The long or prompt-like queries a cluster set left out of its clusters (pageperfect/analysis/long_queries.py),
-- whole, and whether the job asked for them to be clustered all the same.
ALTER TABLE cluster_sets
    ADD COLUMN long_queries TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN long_queries_included BOOLEAN NOT NULL DEFAULT false;
