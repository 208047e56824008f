-- 001: deduplicated report rows, one row per (dedup key, dedup window).
--
-- The processor emits each row with a DETERMINISTIC `row_id` (xxh3 of dedup key and window
-- start) and `version = occurrences`. A redelivered or re-emitted window produces the same
-- `row_id` again; ReplacingMergeTree(version) keeps the row with the highest version, i.e. the
-- fullest count. Merges are eventual, so exact reads use `FINAL` (or argMax by version).
--
-- Same row_id => same window_start => same `day` partition and same ORDER BY key, which is what
-- ReplacingMergeTree needs to collapse duplicates (it only replaces within a partition and by the
-- sorting key).
--
-- Runs on ClickHouse 18.16: no DateTime64, TTL, codecs or LowCardinality.
CREATE TABLE IF NOT EXISTS reports
(
    row_id UInt64,
    version UInt64,
    project_id UInt64,
    day Date,
    window_start DateTime,
    first_seen DateTime,
    last_seen DateTime,
    occurrences UInt32,
    fingerprint UInt64,
    dedup_key UInt64,
    message_id String,
    kind String,
    report_type String,
    wire String,
    disposition String,
    environment String,
    release String,
    document_url String,
    document_origin String,
    document_host String,
    document_path String,
    referrer String,
    blocked_url String,
    blocked_class String,
    blocked_scheme String,
    blocked_host String,
    blocked_domain String,
    blocked_origin String,
    third_party UInt8,
    effective_directive String,
    directive_family String,
    violated_directive String,
    source_file String,
    source_host String,
    line_number UInt32,
    column_number UInt32,
    sample String,
    status_code UInt16,
    policy_hash UInt64,
    original_policy String,
    user_agent String,
    ua_family String,
    ua_major String,
    os_family String,
    device_class String,
    client_ip String,
    country String,
    noise String,
    nel_phase String,
    nel_type String,
    server_ip String,
    elapsed_ms UInt32,
    cert_hostname String,
    cert_port UInt16,
    details String
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY day
ORDER BY (project_id, window_start, row_id);
