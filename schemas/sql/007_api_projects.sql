-- 007: projects and their public keys, managed through `palisade-api` (the control plane). The
-- API renders the complete projects file ingest reads (`palisade-api --projects-file-out`) from
-- these tables after every change and at start-up; a static projects file keeps working for
-- setups without the API.
--
-- ReplacingMergeTree(version) keyed by what identifies the row: the latest write wins; readers
-- take `argMax(x, version)` per key. `version` is the Unix milliseconds of the write (strictly
-- increasing within one API process). Unpartitioned: small tables, retention does not touch them.
--
-- Runs on ClickHouse 18.16: no DateTime64, TTL, codecs or LowCardinality.

-- One row per project: its name and what ingest applies to it (quota, allowed document hosts,
-- privacy defaults, the default noise filter). `allowed_hosts` is newline-separated
-- (`example.com` or `*.example.com`; empty: any host). `client_ip` is `truncate`, `full` or `drop`.
CREATE TABLE IF NOT EXISTS api_projects
(
    project_id UInt64,
    name String,
    quota_per_second UInt32,
    quota_burst UInt32,
    allowed_hosts String,
    strip_query UInt8,
    strip_fragment UInt8,
    drop_referrer UInt8,
    client_ip String,
    default_noise UInt8,
    created_at DateTime,
    changed_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY project_id;

-- One row per public key (the `sentry_key` browsers send): its project and state (`active`,
-- `disabled`: ingest answers 403, `revoked`: ingest answers 410, final).
CREATE TABLE IF NOT EXISTS api_keys
(
    public_key String,
    project_id UInt64,
    state String,
    created_at DateTime,
    changed_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY public_key;
