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

use schemas::{BlockedClass, Details, Disposition, ReportMessage};
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

    /// The `reports` row of a closed window.
    pub fn row(&mut self, window: &ClosedWindow) -> ReportRow {
        let msg: &ReportMessage = &window.first;
        let report = &msg.report;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();

        let document_url = text(&report.document_url);
        let document = self.urls.parts(&document_url);
        let blocked_url = text(&report.blocked_url);
        let blocked = match report.blocked_class {
            BlockedClass::Url
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::Extension
            | BlockedClass::OtherScheme => self.urls.parts(&blocked_url),
            _ => urls::UrlParts::default(),
        };
        let blocked_origin = blocked_origin(report.blocked_class, &blocked);
        let third_party = report.blocked_class == BlockedClass::Url
            && urls::third_party(&document.domain, &blocked.domain);
        let source_file = text(&report.source_file);
        let effective_directive = text(&report.effective_directive);
        let original_policy = text(&report.original_policy);
        let policy_hash = if original_policy.is_empty() {
            0
        } else {
            xxhash_rust::xxh3::xxh3_64(original_policy.as_bytes())
        };
        // The Reporting API's per-report user_agent is the document's; the request header may
        // belong to a service worker or a relay.
        let user_agent = report
            .user_agent
            .clone()
            .or_else(|| msg.request_user_agent.clone())
            .unwrap_or_default();
        let ua = self.ua.classify(&user_agent);
        let client_ip = text(&msg.client_ip);
        let country = self.geo.country(&client_ip);

        let mut row = ReportRow {
            row_id: window.row_id(),
            version: window.occurrences,
            project_id: msg.project_id,
            day: u16::try_from(window.window_start_ms / 86_400_000).unwrap_or(u16::MAX),
            window_start: seconds(window.window_start_ms),
            first_seen: seconds(window.first_seen_ms),
            last_seen: seconds(window.last_seen_ms),
            occurrences: u32::try_from(window.occurrences).unwrap_or(u32::MAX),
            fingerprint: u64::from_str_radix(&msg.fingerprint, 16).unwrap_or(0),
            dedup_key: window.dedup_key,
            message_id: msg.id.clone(),
            kind: report.kind.as_str().to_owned(),
            report_type: text(&report.report_type),
            wire: label(&report.wire),
            disposition: match report.disposition {
                Some(Disposition::Enforce) => "enforce".to_owned(),
                Some(Disposition::Report) => "report".to_owned(),
                None => String::new(),
            },
            environment: text(&msg.environment),
            release: text(&msg.release),
            document_origin: document.origin,
            document_host: document.host,
            document_path: document.path,
            document_url,
            referrer: text(&report.referrer),
            blocked_url,
            blocked_class: label(&report.blocked_class),
            blocked_scheme: blocked.scheme,
            blocked_host: blocked.host,
            blocked_domain: blocked.domain,
            blocked_origin,
            third_party: u8::from(third_party),
            directive_family: directive::family(&effective_directive),
            effective_directive,
            violated_directive: text(&report.violated_directive),
            source_host: self.urls.parts(&source_file).host,
            source_file,
            line_number: clamp_u32(report.line_number),
            column_number: clamp_u32(report.column_number),
            sample: text(&report.sample),
            status_code: report.status_code.unwrap_or(0),
            policy_hash,
            original_policy,
            user_agent,
            ua_family: ua.family,
            ua_major: ua.major,
            os_family: ua.os,
            device_class: ua.device_class,
            client_ip,
            country,
            noise: text(&msg.noise),
            details: details_json(&report.details, &report.extra),
            ..ReportRow::default()
        };
        match &report.details {
            Details::NetworkError(nel) => {
                row.nel_phase = text(&nel.phase);
                row.nel_type = text(&nel.error_type);
                row.server_ip = text(&nel.server_ip);
                row.elapsed_ms = clamp_u32(nel.elapsed_time_ms);
            }
            Details::Certificate(cert) => {
                row.cert_hostname = cert.hostname.clone();
                row.cert_port = cert.port.unwrap_or(0);
            }
            _ => {}
        }
        row
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
        _ => label(&class),
    }
}

/// The serde name of a unit enum variant (`legacy-csp`, `self-origin`).
fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
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
