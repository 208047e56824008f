//! Catalog of every metric `palisade-api` emits, with one typed helper each. Names follow
//! `api_<subject>_<unit>[_total]` in base units; labels come from the route table and the error
//! enum (bounded), never from paths, tokens or projects.

use std::time::Duration;

/// Bucket bounds of the request duration histogram, in seconds.
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests answered, by route label and status code.
pub const REQUESTS_TOTAL: &str = "api_requests_total";
/// Time from request start to answer, by route label.
pub const REQUEST_DURATION_SECONDS: &str = "api_request_duration_seconds";
/// Requests answered with an error, by reason (`ApiError::reason`).
pub const ERRORS_TOTAL: &str = "api_errors_total";
/// Token reloads from ClickHouse, by result (`ok`, `error`).
pub const TOKEN_RELOADS_TOTAL: &str = "api_token_reloads_total";
/// Tokens accepted (admin + active project tokens).
pub const TOKENS_LOADED: &str = "api_tokens_loaded";
/// Changes made through the API, by action (`mute`, `unmute`, `delete`, `apply_resolution`,
/// `create_token`, `revoke_token`).
pub const CHANGES_TOTAL: &str = "api_changes_total";

pub fn request_answered(route: &'static str, status: u16, elapsed: Duration) {
    metrics::counter!(REQUESTS_TOTAL, "route" => route, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => route).record(elapsed.as_secs_f64());
}

pub fn error(reason: &'static str) {
    metrics::counter!(ERRORS_TOTAL, "reason" => reason).increment(1);
}

pub fn token_reload(ok: bool, loaded: usize) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(TOKEN_RELOADS_TOTAL, "result" => result).increment(1);
    if ok {
        metrics::gauge!(TOKENS_LOADED).set(loaded as f64);
    }
}

/// Reads that had to fall back to `reports FINAL` (their candidates, read without it, could
/// not prove the answer exact: many unmerged stale versions), by read (`listing`,
/// `qualifying_groups`).
pub const FINAL_FALLBACKS_TOTAL: &str = "api_final_fallbacks_total";

pub fn final_fallback(read: &'static str) {
    metrics::counter!(FINAL_FALLBACKS_TOTAL, "read" => read).increment(1);
}

pub fn change(action: &'static str) {
    metrics::counter!(CHANGES_TOTAL, "action" => action).increment(1);
}

// --- alerts (`crate::alerts`)

/// Alerts fired, by kind (`new_origin`, `new_fingerprint`, `spike`, `policy_changed`).
pub const ALERTS_FIRED_TOTAL: &str = "api_alerts_fired_total";
/// Webhook delivery attempts, by result (`ok`, `retry`, `failed`, `dropped`).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "api_webhook_deliveries_total";
/// Alert evaluations, by result (`ok`, `error`).
pub const ALERT_EVALUATIONS_TOTAL: &str = "api_alert_evaluations_total";

pub fn alert_fired(kind: &'static str) {
    metrics::counter!(ALERTS_FIRED_TOTAL, "kind" => kind).increment(1);
}

pub fn webhook_delivery(result: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "result" => result).increment(1);
}

pub fn alert_evaluation(ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(ALERT_EVALUATIONS_TOTAL, "result" => result).increment(1);
}

// --- key management (control plane) ---

/// Renders of the projects file for ingest, by result (`written`: replaced, `unchanged`: the
/// file already held the same text). Failed writes count in `api_errors_total` or the log.
pub const PROJECTS_FILE_RENDERS_TOTAL: &str = "api_projects_file_renders_total";

pub fn projects_file_written(replaced: bool) {
    let result = if replaced { "written" } else { "unchanged" };
    metrics::counter!(PROJECTS_FILE_RENDERS_TOTAL, "result" => result).increment(1);
}
