-- 003: a bloom-filter data-skipping index on `blocked_domain`, for "where is this domain
-- blocked?" lookups across projects and long time ranges.
--
-- requires: 21.8
--
-- Gated: 18.16 has skipping indices only behind an experimental setting and no
-- `ADD INDEX IF NOT EXISTS`. On older servers the migration is recorded as skipped and applied by
-- the first `processor migrate` that runs against a new enough server. Parts written before it
-- ran are not indexed until merged (or `ALTER TABLE reports MATERIALIZE INDEX blocked_domain_bf`).
ALTER TABLE reports ADD INDEX IF NOT EXISTS blocked_domain_bf blocked_domain TYPE bloom_filter(0.01) GRANULARITY 4;
