//! Reporting API reports (`report-to`, `Reporting-Endpoints`): items of an
//! `application/reports+json` array, or a single object (Safari 16.4+).
//!
//! Envelope `{type, age, url, user_agent, body}`; the body's shape depends on `type`. CSP
//! bodies share the legacy mapping ([`super::legacy_csp::take_csp`]); NEL is snake_case with
//! its own details; every other known type keeps the common keys in the common fields and
//! the rest in [`Details::Fields`]; an unknown type keeps its whole body.

use std::borrow::Cow;

use super::fields::Fields;
use super::json::{to_json, Json, Members};
use super::{legacy_csp, take_blocked, take_common};
use crate::parse::{ParsedReport, ReportError};
use crate::report::{
    BlockedClass, Details, Disposition, NetworkErrorDetails, ReportKind, WireFormat, MAX_AGE_MS,
};

/// The kind of a Reporting API `type` value.
pub(crate) fn kind_of(report_type: &str) -> ReportKind {
    match report_type {
        "csp-violation" => ReportKind::CspViolation,
        "network-error" => ReportKind::NetworkError,
        "deprecation" => ReportKind::Deprecation,
        "intervention" => ReportKind::Intervention,
        "crash" => ReportKind::Crash,
        "coep" => ReportKind::Coep,
        "coop" => ReportKind::Coop,
        "permissions-policy-violation" => ReportKind::PermissionsPolicyViolation,
        "potential-permissions-policy-violation" => ReportKind::PotentialPermissionsPolicyViolation,
        "document-policy-violation" => ReportKind::DocumentPolicyViolation,
        "integrity-violation" => ReportKind::IntegrityViolation,
        "test" => ReportKind::Test,
        _ => ReportKind::Unknown,
    }
}

/// Parses one item of a Reporting API batch.
pub(crate) fn parse_item<'v>(value: Json<'_, 'v>) -> Result<ParsedReport<'v>, ReportError> {
    match value.as_object() {
        Some(object) => parse(object, WireFormat::ReportingBatch),
        None => Err(ReportError::NotAnObject),
    }
}

/// Parses one Reporting API report object (a batch item or a single-object body).
pub(crate) fn parse<'v>(
    object: Members<'_, 'v>,
    wire: WireFormat,
) -> Result<ParsedReport<'v>, ReportError> {
    let mut envelope = Fields::new(object);
    let report_type = match envelope.raw(&["type"]) {
        None => return Err(ReportError::MissingField("type")),
        Some(value) => Cow::Borrowed(value.as_str().ok_or(ReportError::WrongType("type"))?),
    };
    let kind = kind_of(&report_type);
    let mut report = ParsedReport::blank(kind, wire);
    report.report_type = Some(report_type);
    // `age` is milliseconds before upload; clamped to [0, MAX_AGE_MS] so a broken client
    // clock cannot move the event time arbitrarily.
    report.age_ms = envelope
        .i64(&["age"])
        .map(|age| age.clamp(0, MAX_AGE_MS as i64) as u64);
    let url = envelope.text(&["url"]);
    report.user_agent = envelope.text(&["useragent"]);
    let body = envelope.raw(&["body"]);

    if kind == ReportKind::Unknown {
        report.details = Details::Unknown(body.map_or(serde_json::Value::Null, to_json));
    } else {
        let mut fields = match body {
            None => Fields::empty(),
            Some(body) => match body.as_object() {
                Some(body) => Fields::new(body),
                None => return Err(ReportError::WrongType("body")),
            },
        };
        match kind {
            ReportKind::CspViolation => {
                legacy_csp::take_csp(&mut fields, &mut report)?;
                report.extra.absorb(fields.into_map());
            }
            ReportKind::NetworkError => take_network_error(fields, &mut report),
            _ => {
                take_common(&mut fields, &mut report);
                take_blocked(&mut fields, &mut report, BlockedClass::None);
                if kind == ReportKind::IntegrityViolation && report.disposition.is_none() {
                    report.disposition = fields.bool(&["reportonly"]).map(|report_only| {
                        if report_only {
                            Disposition::Report
                        } else {
                            Disposition::Enforce
                        }
                    });
                }
                report.details = Details::Fields(fields.into_map());
            }
        }
    }
    if report.document_url.is_none() {
        // For NEL `url` is the failed request; for every other type it is the document.
        report.document_url = url;
    }
    report.extra.absorb(envelope.into_map());
    Ok(report)
}

/// NEL body (snake_case): the envelope `url` is the request that failed.
fn take_network_error<'v>(mut fields: Fields<'_, 'v>, report: &mut ParsedReport<'v>) {
    report.referrer = fields.text(&["referrer"]);
    report.status_code = fields.u16(&["statuscode"]);
    let details = NetworkErrorDetails {
        phase: fields.string(&["phase"]),
        error_type: fields.string(&["type"]),
        server_ip: fields.string(&["serverip"]),
        elapsed_time_ms: fields.u64(&["elapsedtime"]),
        method: fields.string(&["method"]),
        protocol: fields.string(&["protocol"]),
        sampling_fraction: fields.f64(&["samplingfraction"]),
    };
    report.details = Details::NetworkError(details);
    report.extra.absorb(fields.into_map());
}
