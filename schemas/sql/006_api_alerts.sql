-- 006: alerts of the tenant API (`palisade-api`): per-project alert settings and webhooks, the
-- alerts fired (each once) and the webhook delivery log.
--
-- Settings and alerts are ReplacingMergeTree(version) keyed by what identifies them (latest
-- write wins; readers use argMax(x, version) or FINAL). An alert's key is (project, kind,
-- subject): the evaluator never fires a key that is already in `alerts`, so each alert fires
-- once. Unpartitioned: small tables (one row per project, per alert, per delivery attempt).
--
-- Runs on ClickHouse 18.16: no DateTime64, TTL, codecs or LowCardinality.

-- One row per project. `webhooks` is newline-separated URLs. `secret` is the webhook signing
-- secret (HMAC-SHA256 key): unlike API tokens it is stored as is, because the API must sign
-- with it; it is never answered after the call that created it.
CREATE TABLE IF NOT EXISTS alert_settings
(
    project_id UInt64,
    enabled UInt8,
    spike_factor UInt32,
    spike_min_count UInt64,
    webhooks String,
    secret String,
    changed_at DateTime,
    changed_by String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY project_id;

-- One row per fired alert. `kind`: `new_fingerprint`, `new_origin`, `spike`, `policy_changed`.
-- `subject`: what makes it unique (fingerprint hex, origin, policy hash hex; a spike is
-- `<fingerprint hex>@<fired_at>`, at most one per group per cooldown). `alert_id`: first 16 hex digits of the SHA-256 of
-- `project/kind/subject`. `webhooks`: endpoints configured when it fired.
CREATE TABLE IF NOT EXISTS alerts
(
    project_id UInt64,
    kind String,
    subject String,
    alert_id String,
    fingerprint UInt64,
    origin String,
    directive String,
    count UInt64,
    baseline UInt64,
    policy_hash UInt64,
    fired_at DateTime,
    webhooks UInt32,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, kind, subject);

-- Every webhook delivery attempt. `result`: `ok` (2xx), `retry` (failed, will retry), `failed`
-- (last attempt failed), `dropped` (delivery queue full). Append only.
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    project_id UInt64,
    alert_id String,
    url String,
    attempt UInt32,
    at DateTime,
    result String,
    status_code UInt16,
    error String
)
ENGINE = MergeTree
ORDER BY (project_id, at);
