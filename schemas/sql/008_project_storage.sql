-- 008: the storage bound of each project (issue 12: "storage bound per tenant"), set through
-- `palisade-api` (`storage` of `POST /v1/projects` and `PATCH /v1/projects/{id}`) and enforced
-- by the processor's retention job, which reads it on every run (no restart).
--
-- `retention_days`: days the project's rows are kept; 0 = the processor's `--retention-days`
-- (a project never keeps rows LONGER than that: partition drops remove every project's rows).
-- `max_rows`: most `reports` rows the project keeps (its oldest rows beyond are deleted);
-- 0 = the processor's `--project-max-rows`.
--
-- A table of its own rather than `ADD COLUMN` on `api_projects`: 18.16 has no
-- `ADD COLUMN IF NOT EXISTS` (a re-run would fail) and the cluster variant cannot `ALTER` a
-- Distributed table (`processor/src/migrate/cluster.rs`). ReplacingMergeTree(version) keyed by
-- the project like `api_projects`: the latest write wins; readers take `argMax(x, version)` per
-- project. Unpartitioned: one row per project; retention does not touch it.
--
-- Runs on ClickHouse 18.16: no DateTime64, TTL, codecs or LowCardinality.
CREATE TABLE IF NOT EXISTS project_storage
(
    project_id UInt64,
    retention_days UInt32,
    max_rows UInt64,
    changed_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY project_id;
