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

use schemas::{BlockedClass, Details, Disposition};
use serde::ser::SerializeMap as _;
use serde::Serialize;
use serde_json::value::RawValue;

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

    /// The `reports` row of a closed window, read from a view of its first message: for a
    /// binary payload the strings are copied once, from the payload into the row (a report that
    /// joined the window was never copied at all).
    pub fn row(&mut self, window: &ClosedWindow) -> ReportRow {
        let msg = window.first.view();
        let report = &msg.report;
        let text = |s: Option<&str>| s.unwrap_or_default().to_owned();

        let document = self.urls.parts(report.document_url.unwrap_or_default());
        let blocked = match report.blocked_class {
            BlockedClass::Url
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::Extension
            | BlockedClass::OtherScheme => self.urls.parts(report.blocked_url.unwrap_or_default()),
            _ => urls::UrlParts::default(),
        };
        let blocked_origin = blocked_origin(report.blocked_class, &blocked);
        let third_party = report.blocked_class == BlockedClass::Url
            && urls::third_party(&document.domain, &blocked.domain);
        let source_host = self.urls.host(report.source_file.unwrap_or_default());
        let policy_hash = match report.original_policy {
            None | Some("") => 0,
            Some(policy) => xxhash_rust::xxh3::xxh3_64(policy.as_bytes()),
        };
        let effective_directive = report.effective_directive.unwrap_or_default();
        // The Reporting API's per-report user_agent is the document's; the request header may
        // belong to a service worker or a relay.
        let user_agent = report
            .user_agent
            .or(msg.request_user_agent)
            .unwrap_or_default();
        let ua = self.ua.classify(user_agent);
        let client_ip = msg.client_ip.unwrap_or_default();
        let country = self.geo.country(client_ip);
        let details = details_json(&report.details, report.extra);

        let mut row = ReportRow {
            row_id: window.row_id(),
            version: window.occurrences,
            project_id: msg.project_id,
            day: u16::try_from(window.window_start_ms / 86_400_000).unwrap_or(u16::MAX),
            window_start: seconds(window.window_start_ms),
            first_seen: seconds(window.first_seen_ms),
            last_seen: seconds(window.last_seen_ms),
            occurrences: u32::try_from(window.occurrences).unwrap_or(u32::MAX),
            fingerprint: u64::from_str_radix(msg.fingerprint, 16).unwrap_or(0),
            dedup_key: window.dedup_key,
            message_id: msg.id.to_owned(),
            kind: report.kind.as_str().to_owned(),
            report_type: text(report.report_type),
            wire: report.wire.as_str().to_owned(),
            disposition: report
                .disposition
                .map_or("", Disposition::as_str)
                .to_owned(),
            environment: text(msg.environment),
            release: text(msg.release),
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
            directive_family: directive::family(effective_directive),
            effective_directive: effective_directive.to_owned(),
            violated_directive: text(report.violated_directive),
            source_host,
            source_file: text(report.source_file),
            line_number: clamp_u32(report.line_number),
            column_number: clamp_u32(report.column_number),
            sample: text(report.sample),
            status_code: report.status_code.unwrap_or(0),
            policy_hash,
            original_policy: text(report.original_policy),
            user_agent: user_agent.to_owned(),
            ua_family: ua.family,
            ua_major: ua.major,
            os_family: ua.os,
            device_class: ua.device_class,
            client_ip: client_ip.to_owned(),
            country,
            noise: text(msg.noise),
            details,
            ..ReportRow::default()
        };
        match &*report.details {
            Details::NetworkError(nel) => {
                row.nel_phase = text(nel.phase.as_deref());
                row.nel_type = text(nel.error_type.as_deref());
                row.server_ip = text(nel.server_ip.as_deref());
                row.elapsed_ms = clamp_u32(nel.elapsed_time_ms);
            }
            Details::Certificate(cert) => {
                row.cert_hostname.clone_from(&cert.hostname);
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
        _ => class.as_str().to_owned(),
    }
}

/// `{"details": .., "extra": ..}`, written straight from the report (`extra` is already JSON
/// text, so no tree is built; `{}` when there is none, as `schemas::Extra` writes it).
fn details_json(details: &Details, extra: Option<&RawValue>) -> String {
    struct ExtraText<'a>(Option<&'a RawValue>);
    impl Serialize for ExtraText<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Some(raw) => raw.serialize(s),
                None => s.serialize_map(Some(0))?.end(),
            }
        }
    }
    #[derive(Serialize)]
    struct Column<'a> {
        details: &'a Details,
        extra: ExtraText<'a>,
    }
    if matches!(details, Details::None) && extra.is_none() {
        return String::new();
    }
    serde_json::to_string(&Column {
        details,
        extra: ExtraText(extra),
    })
    .unwrap_or_default()
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
