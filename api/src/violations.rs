//! Violation groups: list (filtered, newest first, keyset-paginated), details (samples and an
//! hourly series), mute / unmute, delete. Every change is written to `api_audit`.

use http::StatusCode;
use serde::Serialize;

use crate::app::{to_json, Answer, App, Call};
use crate::error::ApiError;
use crate::metrics;
use crate::params::{self, fingerprint_text, rfc3339, Cursor};
use crate::store::{GroupRow, SampleRow};

/// A group as answered.
#[derive(Debug, Serialize)]
pub struct Group {
    pub fingerprint: String,
    pub kind: String,
    pub effective_directive: String,
    /// The blocked origin (`scheme://host[:port]`), scheme (`data:`) or class (`inline`).
    pub blocked: String,
    pub blocked_class: String,
    pub document_host: String,
    pub disposition: String,
    pub first_seen: String,
    pub last_seen: String,
    pub first_seen_unix: u32,
    pub last_seen_unix: u32,
    pub occurrences: u64,
    pub distinct_pages: u64,
    pub distinct_clients: u64,
    pub distinct_client_networks: u64,
    pub muted: bool,
}

impl Group {
    pub fn new(row: &GroupRow, muted: bool) -> Self {
        Self {
            fingerprint: fingerprint_text(row.fingerprint),
            kind: row.kind.clone(),
            effective_directive: row.effective_directive.clone(),
            blocked: row.blocked_origin.clone(),
            blocked_class: row.blocked_class.clone(),
            document_host: row.document_host.clone(),
            disposition: row.disposition.clone(),
            first_seen: rfc3339(row.first_seen),
            last_seen: rfc3339(row.last_seen),
            first_seen_unix: row.first_seen,
            last_seen_unix: row.last_seen,
            occurrences: row.occurrences,
            distinct_pages: row.distinct_pages,
            distinct_clients: row.distinct_clients,
            distinct_client_networks: row.distinct_client_networks,
            muted,
        }
    }
}

#[derive(Debug, Serialize)]
struct Page {
    groups: Vec<Group>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /v1/projects/{id}/violations`.
pub async fn list(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let filter = params::parse_group_filter(call.query.as_deref(), app.defaults())?;
    let (rows, more) = app.store.groups(project, &filter).await?;
    let muted = if filter.include_muted {
        let fingerprints: Vec<u64> = rows.iter().map(|row| row.fingerprint).collect();
        app.store.muted_among(project, &fingerprints).await?
    } else {
        Vec::new() // muted groups were filtered out
    };
    let next_cursor = match rows.last() {
        Some(last) if more => Some(
            Cursor {
                last_seen: last.last_seen,
                fingerprint: last.fingerprint,
            }
            .encode(),
        ),
        _ => None,
    };
    let groups = rows
        .iter()
        .map(|row| Group::new(row, muted.contains(&row.fingerprint)))
        .collect();
    Ok((
        StatusCode::OK,
        to_json(&Page {
            groups,
            next_cursor,
        })?,
    ))
}

#[derive(Debug, Serialize)]
struct Details {
    group: Group,
    samples: Vec<Sample>,
    /// Occurrences per UTC hour, the `series_hours` hours ending at the group's last hour,
    /// zeros included.
    series: Vec<Hour>,
}

#[derive(Debug, Serialize)]
struct Sample {
    last_seen: String,
    #[serde(flatten)]
    row: SampleRow,
}

#[derive(Debug, Serialize)]
struct Hour {
    hour: String,
    hour_unix: u32,
    occurrences: u64,
}

/// The group or 404 (also for a group whose rows were all deleted).
pub async fn existing_group(
    app: &App,
    project: u64,
    fingerprint: u64,
) -> Result<GroupRow, ApiError> {
    app.store
        .group(project, fingerprint)
        .await?
        .ok_or_else(|| ApiError::GroupNotFound {
            fingerprint: fingerprint_text(fingerprint),
        })
}

/// `GET /v1/projects/{id}/violations/{fingerprint}`.
pub async fn get(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let fingerprint = call.params.fingerprint()?;
    let row = existing_group(app, project, fingerprint).await?;
    let muted = !app
        .store
        .muted_among(project, &[fingerprint])
        .await?
        .is_empty();
    let samples = app
        .store
        .samples(
            project,
            fingerprint,
            (row.first_window, row.last_window),
            app.config.limits.samples,
        )
        .await?
        .into_iter()
        .map(|row| Sample {
            last_seen: rfc3339(row.last_seen),
            row,
        })
        .collect();
    let hours = app.config.limits.series_hours;
    let last_hour = row.last_seen / 3600 * 3600;
    let first_hour = last_hour.saturating_sub((hours - 1) * 3600);
    let counted = app
        .store
        .series(project, fingerprint, first_hour, row.last_seen)
        .await?;
    let series = (0..hours)
        .map(|i| first_hour + i * 3600)
        .filter(|hour| *hour <= last_hour)
        .map(|hour| Hour {
            hour: rfc3339(hour),
            hour_unix: hour,
            occurrences: counted
                .iter()
                .find(|counted| counted.hour == hour)
                .map_or(0, |counted| counted.occurrences),
        })
        .collect();
    let details = Details {
        group: Group::new(&row, muted),
        samples,
        series,
    };
    Ok((StatusCode::OK, to_json(&details)?))
}

/// `POST` / `DELETE .../violations/{fingerprint}/mute`. Muting a group that has no rows is
/// allowed (it may be deleted, or not arrived yet): a mute is about a fingerprint.
pub async fn set_muted(app: &App, call: &Call, muted: bool) -> Answer {
    let project = call.params.project()?;
    let fingerprint = call.params.fingerprint()?;
    let actor = call.principal.actor();
    app.store
        .set_muted(project, fingerprint, muted, &actor)
        .await?;
    let action = if muted { "mute" } else { "unmute" };
    app.store
        .audit(project, &actor, action, fingerprint, "")
        .await?;
    metrics::change(action);
    Ok((
        StatusCode::OK,
        serde_json::json!({ "fingerprint": fingerprint_text(fingerprint), "muted": muted }),
    ))
}

/// `DELETE .../violations/{fingerprint}`: schedules the deletion of this project's rows of the
/// group (202: a ClickHouse mutation finishes asynchronously). 404 when the group has no rows.
pub async fn delete(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let fingerprint = call.params.fingerprint()?;
    let row = existing_group(app, project, fingerprint).await?;
    app.store.delete_group(project, fingerprint).await?;
    let detail = format!("occurrences={} rows of project {project}", row.occurrences);
    app.store
        .audit(
            project,
            &call.principal.actor(),
            "delete",
            fingerprint,
            &detail,
        )
        .await?;
    metrics::change("delete");
    Ok((
        StatusCode::ACCEPTED,
        serde_json::json!({
            "fingerprint": fingerprint_text(fingerprint),
            "deleted_occurrences": row.occurrences,
            "status": "scheduled",
            "detail": "a ClickHouse mutation removes the rows shortly; the hourly rollups keep their counts"
        }),
    ))
}
