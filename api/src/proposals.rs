//! Resolutions and the proposed policy: what would allow a group ([`crate::resolution`]),
//! recording a resolution as applied, listing the applied ones, and the observed policy plus
//! every applied or qualifying resolution rendered as a header ([`crate::policy`]).

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::app::{to_json, Answer, App, Call};
use crate::error::ApiError;
use crate::metrics;
use crate::params::{self, fingerprint_text, rfc3339};
use crate::policy::{self, DirectiveChange, Policy};
use crate::resolution::{self, Evidence, GroupFacts, Proposal};
use crate::store::{now_secs, GroupRow, ResolutionRow};
use crate::violations::existing_group;

/// A group's resolution as answered.
#[derive(Debug, Serialize)]
struct Resolution {
    fingerprint: String,
    disposition: String,
    #[serde(flatten)]
    proposal: Proposal,
    evidence: Evidence,
    /// Strong enough to be part of the proposed policy without being applied.
    qualifies: bool,
    /// Why it does not qualify (absent when it does).
    #[serde(skip_serializing_if = "Option::is_none")]
    not_qualified_because: Option<String>,
}

fn evaluate(app: &App, row: &GroupRow) -> Resolution {
    let mut proposal = resolution::propose(&facts(row));
    if row.sample_variants > 1 && row.blocked_class == schemas::BlockedClass::Inline.as_str() {
        // One hash cannot stand for several pieces of code.
        proposal.sources.clear();
        proposal.explanation = format!(
            "{} different code samples share this group: hash each from the page source; \
             'unsafe-inline' is never proposed",
            row.sample_variants
        );
    }
    let evidence = evidence(row);
    let verdict = resolution::qualifies(&proposal, &evidence, &app.thresholds());
    Resolution {
        fingerprint: fingerprint_text(row.fingerprint),
        disposition: row.disposition.clone(),
        proposal,
        evidence,
        qualifies: verdict.is_ok(),
        not_qualified_because: verdict.err(),
    }
}

fn facts(row: &GroupRow) -> GroupFacts {
    GroupFacts {
        kind: row.kind.clone(),
        effective_directive: row.effective_directive.clone(),
        blocked_class: row.blocked_class.clone(),
        blocked_origin: row.blocked_origin.clone(),
        sample: row.sample.clone(),
        noise: row.noise.clone(),
    }
}

fn evidence(row: &GroupRow) -> Evidence {
    Evidence {
        occurrences: row.occurrences,
        distinct_pages: row.distinct_pages,
        distinct_client_networks: row.distinct_client_networks,
    }
}

/// `GET .../violations/{fingerprint}/resolution`.
pub async fn resolution(app: &App, call: &Call) -> Answer {
    let row = existing_group(app, call.params.project()?, call.params.fingerprint()?).await?;
    Ok((StatusCode::OK, to_json(&evaluate(app, &row))?))
}

/// Body of `POST .../resolution/apply`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    /// Apply even though the evidence does not qualify (a human reviewed it).
    #[serde(default)]
    force: bool,
}

/// `POST .../violations/{fingerprint}/resolution/apply`: records the current resolution. 409
/// when there is nothing to add, or when the evidence does not qualify and `force` is not set.
pub async fn apply(app: &App, call: &Call) -> Answer {
    let request: ApplyRequest = call.json()?;
    let project = call.params.project()?;
    let row = existing_group(app, project, call.params.fingerprint()?).await?;
    let resolution = evaluate(app, &row);
    if resolution.proposal.sources.is_empty() {
        return Err(ApiError::NoResolution {
            reason: resolution.proposal.explanation,
        });
    }
    if let Some(reason) = &resolution.not_qualified_because {
        if !request.force {
            return Err(ApiError::NotQualified {
                reason: reason.clone(),
            });
        }
    }
    let applied = ResolutionRow {
        fingerprint: row.fingerprint,
        directive: resolution.proposal.directive.clone(),
        sources: resolution.proposal.sources.join(" "),
        disposition: row.disposition.clone(),
        evidence: serde_json::to_string(&resolution.evidence).map_err(ApiError::Encode)?,
        applied_at: now_secs(),
        applied_by: call.principal.actor(),
    };
    app.store.apply_resolution(project, &applied).await?;
    let detail = format!("{} += {}", applied.directive, applied.sources);
    app.store
        .audit(
            project,
            &applied.applied_by,
            "apply_resolution",
            row.fingerprint,
            &detail,
        )
        .await?;
    metrics::change("apply_resolution");
    Ok((StatusCode::OK, to_json(&Applied::from(&applied))?))
}

/// `DELETE .../violations/{fingerprint}/resolution`: withdraws the group's applied resolution.
/// The proposed policy no longer includes it, not even as a qualifying one: withdrawing is the
/// owner's decision against it (apply it again to undo). 404 `not_applied` when none is applied.
pub async fn withdraw(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let fingerprint = call.params.fingerprint()?;
    let applied = app
        .store
        .resolution(project, fingerprint)
        .await?
        .filter(|row| !row.withdrawn())
        .ok_or_else(|| ApiError::NotApplied {
            fingerprint: fingerprint_text(fingerprint),
        })?;
    let withdrawn = ResolutionRow {
        fingerprint,
        directive: String::new(),
        sources: String::new(),
        disposition: applied.disposition.clone(),
        evidence: String::new(),
        applied_at: now_secs(),
        applied_by: call.principal.actor(),
    };
    app.store.apply_resolution(project, &withdrawn).await?;
    let detail = format!("{} -= {}", applied.directive, applied.sources);
    app.store
        .audit(
            project,
            &withdrawn.applied_by,
            "withdraw_resolution",
            fingerprint,
            &detail,
        )
        .await?;
    metrics::change("withdraw_resolution");
    Ok((
        StatusCode::OK,
        serde_json::json!({
            "fingerprint": fingerprint_text(fingerprint),
            "withdrawn": to_json(&Applied::from(&applied))?,
        }),
    ))
}

/// An applied resolution as answered.
#[derive(Debug, Serialize)]
struct Applied {
    fingerprint: String,
    directive: String,
    sources: Vec<String>,
    disposition: String,
    evidence: serde_json::Value,
    applied_at: String,
    applied_at_unix: u32,
    applied_by: String,
}

impl From<&ResolutionRow> for Applied {
    fn from(row: &ResolutionRow) -> Self {
        Self {
            fingerprint: fingerprint_text(row.fingerprint),
            directive: row.directive.clone(),
            sources: row
                .sources
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            disposition: row.disposition.clone(),
            evidence: serde_json::from_str(&row.evidence).unwrap_or(serde_json::Value::Null),
            applied_at: rfc3339(row.applied_at),
            applied_at_unix: row.applied_at,
            applied_by: row.applied_by.clone(),
        }
    }
}

/// `GET /v1/projects/{id}/resolutions`: applied resolutions, newest first.
pub async fn list(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let rows = app
        .store
        .resolutions(project, app.config.limits.max_resolutions)
        .await?;
    let resolutions: Vec<Applied> = rows
        .iter()
        .filter(|row| !row.withdrawn())
        .map(Applied::from)
        .collect();
    Ok((
        StatusCode::OK,
        serde_json::json!({ "resolutions": to_json(&resolutions)? }),
    ))
}

#[derive(Debug, Serialize)]
struct Proposed {
    /// `Content-Security-Policy` or `Content-Security-Policy-Report-Only`.
    header: &'static str,
    /// The complete header value to deploy.
    value: String,
    /// The policy it was built from (the newest observed one of that disposition).
    observed: String,
    disposition: String,
    /// What was added, per directive.
    diff: Vec<DirectiveChange>,
    /// The resolutions included: applied ones and qualifying ones.
    included: Vec<Included>,
}

#[derive(Debug, Serialize)]
struct Included {
    fingerprint: String,
    directive: String,
    sources: Vec<String>,
    /// `applied` or `qualifying`.
    origin: &'static str,
}

/// `GET /v1/projects/{id}/policy/proposed?since=&disposition=`.
pub async fn proposed_policy(app: &App, call: &Call) -> Answer {
    let project = call.params.project()?;
    let (since, disposition) = proposed_params(call.query.as_deref(), app)?;
    let observed = app
        .store
        .latest_policy(project, disposition.as_deref())
        .await?
        .ok_or(ApiError::NoPolicyObserved)?;
    let disposition = observed.disposition;

    let recorded = app
        .store
        .resolutions(project, app.config.limits.max_resolutions)
        .await?;
    let withdrawn: Vec<u64> = recorded
        .iter()
        .filter(|row| row.withdrawn())
        .map(|row| row.fingerprint)
        .collect();
    let mut included = Vec::new();
    for applied in recorded
        .into_iter()
        .filter(|row| row.disposition == disposition && !row.withdrawn())
    {
        included.push(Included {
            fingerprint: fingerprint_text(applied.fingerprint),
            directive: applied.directive.clone(),
            sources: applied
                .sources
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            origin: "applied",
        });
    }
    let thresholds = app.thresholds();
    let candidates = app
        .store
        .qualifying_groups(
            project,
            since,
            thresholds.min_occurrences,
            thresholds.min_client_networks,
            app.config.limits.max_resolutions,
        )
        .await?;
    for row in candidates
        .iter()
        .filter(|row| row.disposition == disposition)
    {
        if withdrawn.contains(&row.fingerprint) {
            continue; // the owner said no
        }
        let fingerprint = fingerprint_text(row.fingerprint);
        if included.iter().any(|i| i.fingerprint == fingerprint) {
            continue; // applied wins
        }
        let resolution = evaluate(app, row);
        if resolution.qualifies {
            included.push(Included {
                fingerprint,
                directive: resolution.proposal.directive,
                sources: resolution.proposal.sources,
                origin: "qualifying",
            });
        }
    }

    let mut policy = Policy::parse(&observed.original_policy);
    let mut changes = Vec::new();
    for resolution in &included {
        for source in &resolution.sources {
            changes.extend(policy.add_source(&resolution.directive, source));
        }
    }
    let proposed = Proposed {
        header: policy::header_name(&disposition),
        value: policy.render(),
        observed: observed.original_policy,
        disposition,
        diff: policy::merge_changes(changes),
        included,
    };
    Ok((StatusCode::OK, to_json(&proposed)?))
}

fn proposed_params(query: Option<&str>, app: &App) -> Result<(u32, Option<String>), ApiError> {
    let mut since_query = Vec::new();
    let mut disposition = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "disposition" {
            if value != "enforce" && value != "report" {
                return Err(ApiError::InvalidParameter {
                    name: "disposition",
                    reason: "expected enforce or report".to_owned(),
                });
            }
            disposition = Some(value.into_owned());
        } else {
            since_query.push((name.into_owned(), value.into_owned()));
        }
    }
    let rest = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(since_query)
        .finish();
    let since = params::parse_since(Some(&rest), app.defaults())?;
    Ok((since, disposition))
}
