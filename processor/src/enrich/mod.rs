//! Enrichment: turns a closed dedup window (its count and first message) into a [`ReportRow`].
//!
//! Everything here is a pure function of the message except the lookups with state: the
//! user-agent cache ([`useragent`]), the URL parts cache ([`urls::UrlCache`]) and the optional
//! GeoIP database ([`geo`]).

pub mod cache;
pub mod directive;
pub mod geo;
pub mod urls;
pub mod useragent;

use std::num::NonZeroUsize;

use schemas::{BlockedClass, Details, Disposition, ReportMessage, WireFormat};
use serde::Serialize;

use crate::dedup::ClosedWindow;
use crate::row::ReportRow;

pub use geo::{Geo, GeoError};
pub use useragent::{UaClassifier, UaInfo};

/// Builds rows; owns the UA and URL caches and the GeoIP reader.
#[derive(Debug)]
pub struct Enricher {
    ua: UaClassifier,
    urls: urls::UrlCache,
    geo: Geo,
}

impl Enricher {
    pub fn new(ua_cache_size: NonZeroUsize, url_cache_size: NonZeroUsize, geo: Geo) -> Self {
        Self {
            ua: UaClassifier::new(ua_cache_size),
            urls: urls::UrlCache::new(url_cache_size),
            geo,
        }
    }

    /// UA cache (hits, misses) since start.
    pub fn ua_cache_stats(&self) -> (u64, u64) {
        self.ua.stats()
    }

    /// URL cache (hits, misses) since start.
    pub fn url_cache_stats(&self) -> (u64, u64) {
        self.urls.stats()
    }

    /// The `reports` row of a closed window. Takes the window: the row's text columns are the
    /// first message's strings, moved rather than copied (a copy and a free per column was a
    /// tenth of a row's instructions with 1,000,000 keys, benches/README.md issue 13).
    pub fn row(&mut self, window: ClosedWindow) -> ReportRow {
        let row_id = window.row_id();
        let ClosedWindow {
            dedup_key,
            window_start_ms,
            occurrences,
            first_seen_ms,
            last_seen_ms,
            first: msg,
            ..
        } = window;
        let ReportMessage {
            id,
            project_id,
            environment,
            release,
            client_ip,
            request_user_agent,
            fingerprint,
            noise,
            report,
            ..
        } = msg;
        let text = Option::unwrap_or_default;

        let document = self
            .urls
            .parts(report.document_url.as_deref().unwrap_or_default());
        let blocked = match report.blocked_class {
            BlockedClass::Url
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::Extension
            | BlockedClass::OtherScheme => self
                .urls
                .parts(report.blocked_url.as_deref().unwrap_or_default()),
            _ => urls::UrlParts::default(),
        };
        let blocked_origin = blocked_origin(report.blocked_class, &blocked);
        let third_party = report.blocked_class == BlockedClass::Url
            && urls::third_party(&document.domain, &blocked.domain);
        let source_host = self
            .urls
            .host(report.source_file.as_deref().unwrap_or_default());
        let policy_hash = match report.original_policy.as_deref() {
            None | Some("") => 0,
            Some(policy) => xxhash_rust::xxh3::xxh3_64(policy.as_bytes()),
        };
        let effective_directive = text(report.effective_directive);
        let directive_family = directive::family(&effective_directive);
        // The Reporting API's per-report user_agent is the document's; the request header may
        // belong to a service worker or a relay.
        let user_agent = report.user_agent.or(request_user_agent).unwrap_or_default();
        let ua = self.ua.classify(&user_agent);
        let client_ip = text(client_ip);
        let country = self.geo.country(&client_ip);
        let details = details_json(&report.details, &report.extra);

        let mut row = ReportRow {
            row_id,
            version: occurrences,
            project_id,
            day: u16::try_from(window_start_ms / 86_400_000).unwrap_or(u16::MAX),
            window_start: seconds(window_start_ms),
            first_seen: seconds(first_seen_ms),
            last_seen: seconds(last_seen_ms),
            occurrences: u32::try_from(occurrences).unwrap_or(u32::MAX),
            fingerprint: u64::from_str_radix(&fingerprint, 16).unwrap_or(0),
            dedup_key,
            message_id: id,
            kind: report.kind.as_str().to_owned(),
            report_type: text(report.report_type),
            wire: wire_label(report.wire).to_owned(),
            disposition: report
                .disposition
                .map_or("", Disposition::as_str)
                .to_owned(),
            environment: text(environment),
            release: text(release),
            document_origin: document.origin,
            document_host: document.host,
            document_path: document.path,
            document_url: text(report.document_url),
            referrer: text(report.referrer),
            blocked_url: text(report.blocked_url),
            blocked_class: report.blocked_class.as_str().to_owned(),
            blocked_scheme: blocked.scheme,
            blocked_host: blocked.host,
            blocked_domain: blocked.domain,
            blocked_origin,
            third_party: u8::from(third_party),
            directive_family,
            effective_directive,
            violated_directive: text(report.violated_directive),
            source_host,
            source_file: text(report.source_file),
            line_number: clamp_u32(report.line_number),
            column_number: clamp_u32(report.column_number),
            sample: text(report.sample),
            status_code: report.status_code.unwrap_or(0),
            policy_hash,
            original_policy: text(report.original_policy),
            user_agent,
            ua_family: ua.family,
            ua_major: ua.major,
            os_family: ua.os,
            device_class: ua.device_class,
            client_ip,
            country,
            noise: text(noise),
            details,
            ..ReportRow::default()
        };
        match report.details {
            Details::NetworkError(nel) => {
                row.nel_phase = text(nel.phase);
                row.nel_type = text(nel.error_type);
                row.server_ip = text(nel.server_ip);
                row.elapsed_ms = clamp_u32(nel.elapsed_time_ms);
            }
            Details::Certificate(cert) => {
                row.cert_hostname = cert.hostname;
                row.cert_port = cert.port.unwrap_or(0);
            }
            _ => {}
        }
        row
    }
}

/// The serde name of a wire format (`legacy-csp`), without serde: this runs once per row.
fn wire_label(wire: WireFormat) -> &'static str {
    match wire {
        WireFormat::LegacyCsp => "legacy-csp",
        WireFormat::LegacyCspUnwrapped => "legacy-csp-unwrapped",
        WireFormat::ReportingBatch => "reporting-batch",
        WireFormat::ReportingSingle => "reporting-single",
        WireFormat::ExpectCt => "expect-ct",
        WireFormat::Hpkp => "hpkp",
        WireFormat::ExpectStaple => "expect-staple",
        WireFormat::XssAuditor => "xss-auditor",
    }
}

/// `scheme://host[:port]` for URLs, `scheme:` for data/blob/extension/other schemes (how a CSP
/// source expression allows them), else the blocked class label (`inline`, `eval`, ...).
fn blocked_origin(class: BlockedClass, blocked: &urls::UrlParts) -> String {
    match class {
        BlockedClass::Url if !blocked.origin.is_empty() => blocked.origin.clone(),
        BlockedClass::Data
        | BlockedClass::Blob
        | BlockedClass::Extension
        | BlockedClass::OtherScheme
            if !blocked.scheme.is_empty() =>
        {
            format!("{}:", blocked.scheme)
        }
        _ => class.as_str().to_owned(),
    }
}

/// `{"details": .., "extra": ..}`, written straight from the report (`extra` is already JSON
/// text, so no tree is built).
fn details_json(details: &Details, extra: &schemas::Extra) -> String {
    #[derive(Serialize)]
    struct Column<'a> {
        details: &'a Details,
        extra: &'a schemas::Extra,
    }
    if matches!(details, Details::None) && extra.is_empty() {
        return String::new();
    }
    serde_json::to_string(&Column { details, extra }).unwrap_or_default()
}

fn seconds(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

fn clamp_u32(value: Option<u64>) -> u32 {
    value.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
