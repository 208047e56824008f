-- 002: rollups with EXACT counts, recomputed by the processor (not materialized views).
--
-- Why not a materialized view: an MV sees every INSERT into `reports`, including re-emitted rows
-- that ReplacingMergeTree later collapses, so summing `occurrences` in an MV over-counts.
--
-- Instead, after each acknowledged batch the processor recomputes the (project, hour) groups the
-- batch touched from `reports FINAL` and inserts the result
-- (`Writer::refresh_rollups`). Recomputing is idempotent. Each rollup is a
-- ReplacingMergeTree whose version is the group's `occurrences`: a group's total only grows
-- (rows are only added, and a replaced row only ever carries a fuller count), so the highest
-- version is always the freshest recomputation, whatever order concurrent processors refresh in.
-- Read rollups with FINAL. Partitioned by `day` like `reports`, so retention drops them together.

-- Hourly counts by the dimensions most questions group on.
CREATE TABLE IF NOT EXISTS rollup_hourly
(
    project_id UInt64,
    day Date,
    hour DateTime,
    kind String,
    disposition String,
    directive_family String,
    blocked_origin String,
    noise String,
    third_party UInt8,
    rows UInt64,
    occurrences UInt64,
    first_seen DateTime,
    last_seen DateTime
)
ENGINE = ReplacingMergeTree(occurrences)
PARTITION BY day
ORDER BY (project_id, hour, kind, disposition, directive_family, blocked_origin, noise, third_party);

-- Network Error Logging by host, phase and type (type `ok` is a success sampled by
-- success_fraction, everything else an error).
CREATE TABLE IF NOT EXISTS rollup_nel_hourly
(
    project_id UInt64,
    day Date,
    hour DateTime,
    document_host String,
    nel_phase String,
    nel_type String,
    rows UInt64,
    occurrences UInt64,
    first_seen DateTime,
    last_seen DateTime
)
ENGINE = ReplacingMergeTree(occurrences)
PARTITION BY day
ORDER BY (project_id, hour, document_host, nel_phase, nel_type);

-- Policy versions (hash of the original policy) seen per hour, to see when a policy changed.
CREATE TABLE IF NOT EXISTS rollup_policy_hourly
(
    project_id UInt64,
    day Date,
    hour DateTime,
    policy_hash UInt64,
    original_policy String,
    rows UInt64,
    occurrences UInt64,
    first_seen DateTime,
    last_seen DateTime
)
ENGINE = ReplacingMergeTree(occurrences)
PARTITION BY day
ORDER BY (project_id, hour, policy_hash);
