//! The alert queries (migration 006): settings, the rule candidates read from `reports`, the
//! fired alerts and the delivery log.
//!
//! Rule candidates read the highest version of each row ([`LATEST_VERSIONS`], exact like
//! FINAL) only over the recent range (`window_start >= since`,
//! the sorting key bounds it); "never seen before" is a `NOT IN` over the project's older rows,
//! read without FINAL (exact: every version of a row has the same `window_start`, fingerprint,
//! origin and policy hash). Muted groups are excluded with the mutes subquery of
//! [`super::MUTED_SUBQUERY`].

use serde::Deserialize;

use super::{now_secs, Store, MUTED_SUBQUERY};
use crate::error::ApiError;

/// The rows of `reports` at their highest version (what FINAL keeps), one per
/// `(window_start, row_id)`: append ` WHERE <conditions on columns every version shares>
/// GROUP BY window_start, row_id`. Used instead of FINAL: on ClickHouse 18.16 a FINAL read
/// merges the last granule of every part whatever the range (1.4 GB of memory per rule query
/// at 10 M rows, `palisade-api-bench`); the WHERE here filters before anything is grouped.
const LATEST_VERSIONS: &str = "SELECT any(fingerprint) AS x_fp, any(blocked_origin) AS x_origin, \
     any(effective_directive) AS x_dir, any(policy_hash) AS x_ph, window_start AS x_ws, \
     argMax(occurrences, version) AS x_occ, argMax(first_seen, version) AS x_first FROM reports";

/// A project's alert settings as stored (latest version).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct AlertSettingsRow {
    pub project_id: u64,
    pub enabled: u8,
    pub spike_factor: u32,
    pub spike_min_count: u64,
    /// Newline-separated URLs.
    pub webhooks: String,
    pub secret: String,
}

/// A group (or origin, or policy) that may fire an alert.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct CandidateRow {
    /// Fingerprint, or the group's fingerprint of an origin (any), or 0.
    pub fingerprint: u64,
    pub origin: String,
    pub directive: String,
    /// Occurrences in the recent range (exact: the highest version of each row).
    pub count: u64,
    /// Spikes: occurrences in the 24 h before the last hour; else 0.
    pub baseline: u64,
    pub policy_hash: u64,
    pub first_seen: u32,
}

/// A fired alert, as listed.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize, serde::Serialize)]
pub struct AlertRow {
    pub alert_id: String,
    pub kind: String,
    pub subject: String,
    pub fingerprint: u64,
    pub origin: String,
    pub directive: String,
    pub count: u64,
    pub baseline: u64,
    pub policy_hash: u64,
    pub fired_at: u32,
    pub webhooks: u32,
    /// Endpoints that answered 2xx.
    pub delivered_endpoints: u64,
    /// Endpoints that gave up (`failed` or `dropped`).
    pub failed_endpoints: u64,
    /// Attempts logged.
    pub attempts: u64,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize, serde::Serialize)]
pub struct DeliveryRow {
    pub alert_id: String,
    pub url: String,
    pub attempt: u32,
    pub at: u32,
    pub result: String,
    pub status_code: u16,
    pub error: String,
}

/// A new alert to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub project: u64,
    pub kind: &'static str,
    pub subject: String,
    pub alert_id: String,
    pub candidate: CandidateRow,
    pub fired_at: u32,
    pub webhooks: u32,
}

impl Store {
    /// Every project's stored settings (latest version each).
    pub async fn alert_settings(&self, limit: u32) -> Result<Vec<AlertSettingsRow>, ApiError> {
        let sql = "SELECT project_id, argMax(enabled, version), argMax(spike_factor, version), \
                   argMax(spike_min_count, version), argMax(webhooks, version), \
                   argMax(secret, version) FROM alert_settings GROUP BY project_id \
                   ORDER BY project_id LIMIT ?";
        let query = self.client.query(sql).bind(limit);
        self.timed("reading alert settings", query.fetch_all())
            .await
    }

    /// One project's stored settings.
    pub async fn project_alert_settings(
        &self,
        project: u64,
    ) -> Result<Option<AlertSettingsRow>, ApiError> {
        let sql = "SELECT project_id, argMax(enabled, version), argMax(spike_factor, version), \
                   argMax(spike_min_count, version), argMax(webhooks, version), \
                   argMax(secret, version) FROM alert_settings WHERE project_id = ? \
                   GROUP BY project_id";
        let query = self.client.query(sql).bind(project);
        self.timed("reading alert settings", query.fetch_optional())
            .await
    }

    pub async fn write_alert_settings(
        &self,
        row: &AlertSettingsRow,
        actor: &str,
    ) -> Result<(), ApiError> {
        let sql = "INSERT INTO alert_settings (project_id, enabled, spike_factor, \
                   spike_min_count, webhooks, secret, changed_at, changed_by, version) \
                   SELECT ?, ?, ?, ?, ?, ?, toDateTime(?), ?, ?";
        let query = self
            .client
            .query(sql)
            .bind(row.project_id)
            .bind(row.enabled)
            .bind(row.spike_factor)
            .bind(row.spike_min_count)
            .bind(&row.webhooks)
            .bind(&row.secret)
            .bind(now_secs())
            .bind(actor)
            .bind(self.next_version());
        self.timed("writing alert settings", query.execute()).await
    }

    /// Projects with rows whose window starts at or after `since`.
    pub async fn active_projects(&self, since: u32, limit: u32) -> Result<Vec<u64>, ApiError> {
        let sql = "SELECT DISTINCT project_id FROM reports WHERE window_start >= toDateTime(?) \
                   ORDER BY project_id LIMIT ?";
        let query = self.client.query(sql).bind(since).bind(limit);
        self.timed("reading active projects", query.fetch_all())
            .await
    }

    /// Unmuted groups whose first row is at or after `since` (no older row in the project).
    pub async fn new_fingerprints(
        &self,
        project: u64,
        since: u32,
        limit: u32,
    ) -> Result<Vec<CandidateRow>, ApiError> {
        let sql = format!(
            "SELECT x_fp, any(x_origin), any(x_dir), sum(x_occ), toUInt64(0), toUInt64(0), \
             toUInt32(min(x_first)) AS f FROM ({LATEST_VERSIONS} WHERE project_id = ? \
             AND window_start >= toDateTime(?) AND fingerprint NOT IN ({MUTED_SUBQUERY}) \
             AND fingerprint NOT IN (SELECT fingerprint FROM reports \
                 WHERE project_id = ? AND window_start < toDateTime(?)) \
             GROUP BY window_start, row_id) GROUP BY x_fp ORDER BY f, x_fp LIMIT ?"
        );
        let query = self
            .client
            .query(&sql)
            .bind(project)
            .bind(since)
            .bind(project)
            .bind(project)
            .bind(since)
            .bind(limit);
        self.timed("reading new groups", query.fetch_all()).await
    }

    /// Blocked origins of unmuted groups whose first row is at or after `since`.
    pub async fn new_origins(
        &self,
        project: u64,
        since: u32,
        limit: u32,
    ) -> Result<Vec<CandidateRow>, ApiError> {
        let sql = format!(
            "SELECT any(x_fp), x_origin, any(x_dir), sum(x_occ), toUInt64(0), toUInt64(0), \
             toUInt32(min(x_first)) AS f FROM ({LATEST_VERSIONS} WHERE project_id = ? \
             AND window_start >= toDateTime(?) \
             AND blocked_origin != '' AND fingerprint NOT IN ({MUTED_SUBQUERY}) \
             AND blocked_origin NOT IN (SELECT blocked_origin FROM reports \
                 WHERE project_id = ? AND window_start < toDateTime(?) AND blocked_origin != '') \
             GROUP BY window_start, row_id) GROUP BY x_origin ORDER BY f, x_origin LIMIT ?"
        );
        let query = self
            .client
            .query(&sql)
            .bind(project)
            .bind(since)
            .bind(project)
            .bind(project)
            .bind(since)
            .bind(limit);
        self.timed("reading new origins", query.fetch_all()).await
    }

    /// Unmuted groups with at least `min_count` occurrences in windows starting at or after
    /// `hour_start`, and some in the 24 h before it (`baseline`); the factor is applied by the
    /// caller (`alerts::rules::is_spike`).
    pub async fn spike_candidates(
        &self,
        project: u64,
        hour_start: u32,
        min_count: u64,
        limit: u32,
    ) -> Result<Vec<CandidateRow>, ApiError> {
        let day_before = hour_start.saturating_sub(24 * 3600);
        let sql = format!(
            "SELECT x_fp, any(x_origin), any(x_dir), \
             sumIf(x_occ, x_ws >= toDateTime(?)) AS recent, \
             sumIf(x_occ, x_ws < toDateTime(?)) AS prior, toUInt64(0), \
             toUInt32(min(x_first)) FROM ({LATEST_VERSIONS} WHERE project_id = ? \
             AND window_start >= toDateTime(?) AND fingerprint NOT IN ({MUTED_SUBQUERY}) \
             GROUP BY window_start, row_id) \
             GROUP BY x_fp HAVING recent >= ? AND prior > 0 \
             ORDER BY recent DESC, x_fp LIMIT ?"
        );
        let query = self
            .client
            .query(&sql)
            .bind(hour_start)
            .bind(hour_start)
            .bind(project)
            .bind(day_before)
            .bind(project)
            .bind(min_count)
            .bind(limit);
        self.timed("reading spike candidates", query.fetch_all())
            .await
    }

    /// CSP policy hashes first seen at or after `since`, when the project had another policy
    /// before (the project's first policy is not a change).
    pub async fn new_policies(
        &self,
        project: u64,
        since: u32,
        limit: u32,
    ) -> Result<Vec<CandidateRow>, ApiError> {
        let sql = format!(
            "SELECT toUInt64(0), '', '', sum(x_occ), toUInt64(0), x_ph, \
             toUInt32(min(x_first)) AS f FROM ({LATEST_VERSIONS} WHERE project_id = ? \
             AND window_start >= toDateTime(?) \
             AND kind = 'csp-violation' AND policy_hash != 0 \
             AND policy_hash NOT IN (SELECT policy_hash FROM reports \
                 WHERE project_id = ? AND window_start < toDateTime(?) AND policy_hash != 0) \
             AND (SELECT count() FROM reports WHERE project_id = ? \
                 AND window_start < toDateTime(?) AND policy_hash != 0) > 0 \
             GROUP BY window_start, row_id) GROUP BY x_ph ORDER BY f, x_ph LIMIT ?"
        );
        let query = self
            .client
            .query(&sql)
            .bind(project)
            .bind(since)
            .bind(project)
            .bind(since)
            .bind(project)
            .bind(since)
            .bind(limit);
        self.timed("reading new policies", query.fetch_all()).await
    }

    /// Which of `subjects` of `kind` already fired in `project`.
    pub async fn fired_subjects(
        &self,
        project: u64,
        kind: &str,
        subjects: &[String],
    ) -> Result<Vec<String>, ApiError> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let sql = "SELECT DISTINCT subject FROM alerts WHERE project_id = ? AND kind = ? \
                   AND has(?, subject)";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(kind)
            .bind(subjects.to_vec());
        self.timed("reading fired alerts", query.fetch_all()).await
    }

    /// Groups with a spike alert fired at or after `since`.
    pub async fn recent_spikes(&self, project: u64, since: u32) -> Result<Vec<u64>, ApiError> {
        let sql = "SELECT DISTINCT fingerprint FROM alerts WHERE project_id = ? \
                   AND kind = 'spike' AND fired_at >= toDateTime(?)";
        let query = self.client.query(sql).bind(project).bind(since);
        self.timed("reading recent spikes", query.fetch_all()).await
    }

    pub async fn insert_alert(&self, alert: &NewAlert) -> Result<(), ApiError> {
        let sql = "INSERT INTO alerts (project_id, kind, subject, alert_id, fingerprint, origin, \
                   directive, count, baseline, policy_hash, fired_at, webhooks, version) \
                   SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, toDateTime(?), ?, ?";
        let c = &alert.candidate;
        let query = self
            .client
            .query(sql)
            .bind(alert.project)
            .bind(alert.kind)
            .bind(&alert.subject)
            .bind(&alert.alert_id)
            .bind(c.fingerprint)
            .bind(&c.origin)
            .bind(&c.directive)
            .bind(c.count)
            .bind(c.baseline)
            .bind(c.policy_hash)
            .bind(alert.fired_at)
            .bind(alert.webhooks)
            .bind(self.next_version());
        self.timed("recording an alert", query.execute()).await
    }

    /// Fired alerts, newest first, with their delivery state.
    pub async fn alerts(&self, project: u64, limit: u32) -> Result<Vec<AlertRow>, ApiError> {
        // No table-qualified names and no alias equal to a column (ClickHouse 18.16).
        let sql = "SELECT alert_id, kind, subject, fp, og, dir, cnt, base, ph, at, hooks, \
                   delivered, failed, attempts FROM ( \
                     SELECT alert_id, kind, subject, argMax(fingerprint, version) AS fp, \
                     argMax(origin, version) AS og, argMax(directive, version) AS dir, \
                     argMax(count, version) AS cnt, argMax(baseline, version) AS base, \
                     argMax(policy_hash, version) AS ph, \
                     toUInt32(argMax(fired_at, version)) AS at, \
                     argMax(webhooks, version) AS hooks \
                     FROM alerts WHERE project_id = ? GROUP BY alert_id, kind, subject \
                     ORDER BY at DESC, alert_id DESC LIMIT ? \
                   ) ANY LEFT JOIN ( \
                     SELECT alert_id, uniqExactIf(url, result = 'ok') AS delivered, \
                     uniqExactIf(url, result IN ('failed', 'dropped')) AS failed, \
                     count() AS attempts FROM alert_deliveries WHERE project_id = ? \
                     GROUP BY alert_id \
                   ) USING alert_id ORDER BY at DESC, alert_id DESC";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(limit)
            .bind(project);
        self.timed("listing alerts", query.fetch_all()).await
    }

    pub async fn log_delivery(&self, project: u64, row: &DeliveryRow) -> Result<(), ApiError> {
        let sql = "INSERT INTO alert_deliveries (project_id, alert_id, url, attempt, at, result, \
                   status_code, error) SELECT ?, ?, ?, ?, toDateTime(?), ?, ?, ?";
        let query = self
            .client
            .query(sql)
            .bind(project)
            .bind(&row.alert_id)
            .bind(&row.url)
            .bind(row.attempt)
            .bind(row.at)
            .bind(&row.result)
            .bind(row.status_code)
            .bind(&row.error);
        self.timed("logging a delivery", query.execute()).await
    }

    /// The delivery log, newest first.
    pub async fn deliveries(&self, project: u64, limit: u32) -> Result<Vec<DeliveryRow>, ApiError> {
        let sql = "SELECT alert_id, url, attempt, toUInt32(at) AS t, result, status_code, error \
                   FROM alert_deliveries WHERE project_id = ? \
                   ORDER BY t DESC, alert_id DESC, attempt DESC LIMIT ?";
        let query = self.client.query(sql).bind(project).bind(limit);
        self.timed("listing deliveries", query.fetch_all()).await
    }
}
