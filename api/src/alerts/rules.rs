//! The alert rules and their evaluation: for each project with recent rows (and alerts
//! enabled), read the candidates of each rule from ClickHouse, drop those already fired (the
//! `alerts` table, keyed by (project, kind, subject)), record the rest and queue one webhook
//! delivery per configured endpoint.
//!
//! Rules (muted groups never count):
//! - `new_origin`: a blocked origin first seen in the project within `--alert-lookback-secs`.
//! - `new_fingerprint`: a group first seen within the lookback, unless its blocked origin is new
//!   too (the `new_origin` alert already says it).
//! - `spike`: a group with at least `spike_min_count` occurrences in the last hour and at least
//!   `spike_factor` x its hourly rate over the 24 h before (which must be > 0: a group never
//!   seen before is `new`, not a spike). At most once per group per
//!   `--alert-spike-cooldown-secs` (default 24 h).
//! - `policy_changed`: a CSP original-policy hash first seen within the lookback, when the
//!   project had another policy before.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::webhook::{self, Delivery};
use super::Settings;
use crate::app::App;
use crate::error::ApiError;
use crate::metrics;
use crate::params::{fingerprint_text, rfc3339};
use crate::store::{now_secs, CandidateRow, NewAlert};

/// One hour, in seconds: the spike window.
const HOUR: u32 = 3600;

/// Whether `recent` occurrences in the last hour are a spike over `before` occurrences in the
/// 24 hours before it: `recent >= min_count` and `recent >= factor x before / 24`, with
/// `before > 0`.
pub fn is_spike(recent: u64, before: u64, factor: u32, min_count: u64) -> bool {
    before > 0
        && recent >= min_count
        && u128::from(recent) * 24 >= u128::from(before) * u128::from(factor)
}

/// The id of an alert: the first 16 hex digits of SHA-256 of `project/kind/subject`.
pub fn alert_id(project: u64, kind: &str, subject: &str) -> String {
    let digest = Sha256::digest(format!("{project}/{kind}/{subject}").as_bytes());
    hex::encode(&digest[..8])
}

/// Evaluates every `--alert-interval-secs` (the first time at once) until `shutdown`.
pub async fn run(
    app: std::sync::Arc<App>,
    sender: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
) {
    let every = Duration::from_secs(app.config.alerts.alert_interval_secs);
    loop {
        match evaluate(&app, &sender, now_secs()).await {
            Ok(fired) => {
                metrics::alert_evaluation(true);
                if fired > 0 {
                    tracing::info!(fired, "alerts fired");
                }
            }
            Err(error) => {
                metrics::alert_evaluation(false);
                tracing::warn!(error = %error, "alert evaluation failed");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One evaluation at `now` (Unix seconds): returns how many alerts fired. A project whose
/// queries fail is skipped (logged) and the others still evaluated; the error is returned
/// after all projects.
pub async fn evaluate(
    app: &App,
    sender: &mpsc::Sender<Delivery>,
    now: u32,
) -> Result<u64, ApiError> {
    let config = &app.config.alerts;
    let lookback = u32::try_from(config.alert_lookback_secs).unwrap_or(u32::MAX);
    let since = now.saturating_sub(lookback);
    let stored: BTreeMap<u64, Settings> = app
        .store
        .alert_settings(config.alert_max_projects)
        .await?
        .into_iter()
        .map(|row| (row.project_id, Settings::from_row(&row)))
        .collect();
    let projects = app
        .store
        .active_projects(
            since.min(now.saturating_sub(HOUR)),
            config.alert_max_projects,
        )
        .await?;
    let mut fired = 0;
    let mut failure = None;
    for project in projects {
        let settings = stored
            .get(&project)
            .cloned()
            .unwrap_or_else(|| Settings::defaults(config));
        if !settings.enabled {
            continue;
        }
        match evaluate_project(app, sender, project, &settings, now, since).await {
            Ok(count) => fired += count,
            Err(error) => {
                tracing::warn!(project, error = %error, "alert evaluation of a project failed");
                failure = Some(error);
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(fired),
    }
}

async fn evaluate_project(
    app: &App,
    sender: &mpsc::Sender<Delivery>,
    project: u64,
    settings: &Settings,
    now: u32,
    since: u32,
) -> Result<u64, ApiError> {
    let limit = app.config.alerts.alert_max_per_evaluation;
    let store = &app.store;
    let origins = store.new_origins(project, since, limit).await?;
    let new_origins: BTreeSet<&str> = origins.iter().map(|c| c.origin.as_str()).collect();
    let groups: Vec<CandidateRow> = store
        .new_fingerprints(project, since, limit)
        .await?
        .into_iter()
        .filter(|c| !new_origins.contains(c.origin.as_str()))
        .collect();
    let cooldown = u32::try_from(app.config.alerts.alert_spike_cooldown_secs).unwrap_or(u32::MAX);
    let cooling: BTreeSet<u64> = store
        .recent_spikes(project, now.saturating_sub(cooldown))
        .await?
        .into_iter()
        .collect();
    let hour_start = now.saturating_sub(HOUR);
    let spikes: Vec<CandidateRow> = store
        .spike_candidates(project, hour_start, settings.spike_min_count, limit)
        .await?
        .into_iter()
        .filter(|c| !cooling.contains(&c.fingerprint))
        .filter(|c| {
            is_spike(
                c.count,
                c.baseline,
                settings.spike_factor,
                settings.spike_min_count,
            )
        })
        .collect();
    let policies = store.new_policies(project, since, limit).await?;
    let by_kind: [(&'static str, Vec<(String, CandidateRow)>); 4] = [
        (
            "new_origin",
            origins
                .iter()
                .map(|c| (c.origin.clone(), c.clone()))
                .collect(),
        ),
        (
            "new_fingerprint",
            groups
                .into_iter()
                .map(|c| (fingerprint_text(c.fingerprint), c))
                .collect(),
        ),
        (
            "spike",
            spikes
                .into_iter()
                .map(|c| (format!("{}@{now}", fingerprint_text(c.fingerprint)), c))
                .collect(),
        ),
        (
            "policy_changed",
            policies
                .into_iter()
                .map(|c| (format!("{:016x}", c.policy_hash), c))
                .collect(),
        ),
    ];
    let mut fired = 0;
    for (kind, candidates) in by_kind {
        let subjects: Vec<String> = candidates.iter().map(|(s, _)| s.clone()).collect();
        let already: BTreeSet<String> = store
            .fired_subjects(project, kind, &subjects)
            .await?
            .into_iter()
            .collect();
        for (subject, candidate) in candidates {
            if already.contains(&subject) {
                continue;
            }
            let alert = NewAlert {
                project,
                kind,
                alert_id: alert_id(project, kind, &subject),
                subject,
                candidate,
                fired_at: now,
                webhooks: u32::try_from(settings.webhooks.len()).unwrap_or(u32::MAX),
            };
            store.insert_alert(&alert).await?;
            metrics::alert_fired(kind);
            fired += 1;
            let body = Bytes::from(serde_json::to_vec(&payload(&alert)).map_err(ApiError::Encode)?);
            for url in &settings.webhooks {
                let delivery = Delivery {
                    project,
                    alert_id: alert.alert_id.clone(),
                    url: url.clone(),
                    secret: settings.secret.clone(),
                    body: body.clone(),
                };
                webhook::enqueue(app, sender, delivery).await;
            }
        }
    }
    Ok(fired)
}

/// The JSON a webhook receives.
pub fn payload(alert: &NewAlert) -> serde_json::Value {
    let c = &alert.candidate;
    serde_json::json!({
        "id": alert.alert_id,
        "project_id": alert.project,
        "kind": alert.kind,
        "fingerprint": (c.fingerprint != 0).then(|| fingerprint_text(c.fingerprint)),
        "origin": c.origin,
        "directive": c.directive,
        "count": c.count,
        "baseline_24h": c.baseline,
        "policy_hash": (c.policy_hash != 0).then(|| format!("{:016x}", c.policy_hash)),
        "fired_at": rfc3339(alert.fired_at),
        "fired_at_unix": alert.fired_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_need_the_factor_the_minimum_and_a_baseline() {
        // 24 in the day before = 1 per hour; factor 20.
        assert!(is_spike(20, 24, 20, 10));
        assert!(!is_spike(19, 24, 20, 10));
        assert!(!is_spike(9, 1, 20, 10), "under the minimum count");
        assert!(!is_spike(1_000, 0, 20, 10), "no baseline: that is `new`");
        assert!(
            !is_spike(u64::MAX / 2, u64::MAX, u32::MAX, 1),
            "no overflow"
        );
    }

    #[test]
    fn alert_ids_are_stable_and_distinct() {
        assert_eq!(alert_id(1, "spike", "a"), alert_id(1, "spike", "a"));
        assert_ne!(alert_id(1, "spike", "a"), alert_id(2, "spike", "a"));
        assert_ne!(alert_id(1, "spike", "a"), alert_id(1, "new_origin", "a"));
        assert_eq!(alert_id(1, "spike", "a").len(), 16);
    }
}
