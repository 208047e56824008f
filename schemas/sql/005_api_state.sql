-- 005: the tenant API's own state (`palisade-api`): API tokens, muted violation groups, applied
-- resolutions and an audit log of what tenants changed.
--
-- Tokens, mutes and resolutions are ReplacingMergeTree(version) keyed by what identifies them:
-- the latest write wins. `version` is the Unix milliseconds of the write (strictly increasing
-- within one API process), so the newest state is the one kept by merges, and readers use
-- `FINAL` to see it before merges. Unpartitioned: these tables stay small (one row per token,
-- per muted group, per resolution); retention does not touch them.
--
-- Runs on ClickHouse 18.16: no DateTime64, TTL, codecs or LowCardinality.

-- One row per API token. Only the SHA-256 of the token is stored (hex); the token itself is shown
-- once when created. `kind` is `project` (sees only `project_id`) or `admin`.
CREATE TABLE IF NOT EXISTS api_tokens
(
    token_hash String,
    project_id UInt64,
    kind String,
    created_at DateTime,
    revoked UInt8,
    changed_at DateTime,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_hash;

-- Whether a violation group (project, fingerprint) is muted; unmuting writes `muted = 0`.
CREATE TABLE IF NOT EXISTS violation_mutes
(
    project_id UInt64,
    fingerprint UInt64,
    muted UInt8,
    changed_at DateTime,
    changed_by String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, fingerprint);

-- The resolution applied to a violation group: the source expressions (space-separated) added
-- to a directive of the policy of that disposition (`enforce` or `report`), and the evidence
-- (JSON) it was applied on. Applying again replaces it.
CREATE TABLE IF NOT EXISTS resolutions
(
    project_id UInt64,
    fingerprint UInt64,
    directive String,
    sources String,
    disposition String,
    evidence String,
    applied_at DateTime,
    applied_by String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, fingerprint);

-- What tenants and admins changed (mute, unmute, delete, apply, token created): append only.
CREATE TABLE IF NOT EXISTS api_audit
(
    project_id UInt64,
    at DateTime,
    actor String,
    action String,
    fingerprint UInt64,
    detail String
)
ENGINE = MergeTree
ORDER BY (project_id, at);
