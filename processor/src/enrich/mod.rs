//! Enrichment: turns a closed dedup window (its count and first message) into a `reports` row,
//! written straight into the batch's RowBinary buffer ([`Enricher::write_row`]).
//!
//! Everything here is a pure function of the message except the lookups with state: the
//! user-agent cache ([`useragent`]), the URL parts cache ([`urls::UrlCache`]) and the optional
//! GeoIP database ([`geo`]).

pub mod cache;
pub mod directive;
pub mod geo;
pub mod urls;
pub mod useragent;

use std::borrow::Cow;
use std::num::NonZeroUsize;

use schemas::{BlockedClass, Details, Disposition};
use serde::ser::SerializeMap as _;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::dedup::{ClosedWindow, HeldJson};
use crate::row::{ReportRow, RowKey, Rows};

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

    /// Appends the `reports` row of a closed window to `rows`, in RowBinary, read from a view
    /// of its first message: the message's strings are copied once, from the payload (or the
    /// decoded JSON message) into the batch's buffer, and no [`ReportRow`] is built (a message
    /// that joined the window was never copied at all). Always appends exactly one row.
    pub fn write_row(&mut self, window: &ClosedWindow, rows: &mut Rows) {
        let first = window.first.first();
        let msg = &first.message;
        let report = &msg.report;

        let document = self.urls.parts(report.document_url.unwrap_or_default());
        let (blocked_parts, no_parts);
        let blocked: &urls::UrlParts = match report.blocked_class {
            BlockedClass::Url
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::Extension
            | BlockedClass::OtherScheme => {
                blocked_parts = self.urls.parts(report.blocked_url.unwrap_or_default());
                &blocked_parts
            }
            _ => {
                no_parts = urls::UrlParts::default();
                &no_parts
            }
        };
        let blocked_origin = blocked_origin(report.blocked_class, blocked);
        let third_party = report.blocked_class == BlockedClass::Url
            && urls::third_party(&document.domain, &blocked.domain);
        let source = self.urls.parts(report.source_file.unwrap_or_default());
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
        // The NEL and certificate columns need the details parsed; the details column is only
        // their JSON text, which a binary payload holds as it is.
        let (details, details_column) = match first.json {
            HeldJson::InMessage => (
                Cow::Borrowed(&*report.details),
                DetailsColumn::Json(details_json(&report.details, report.extra)),
            ),
            HeldJson::Text { details, extra } => {
                let parsed = match details {
                    Some(text) if may_fill_columns(text) => Cow::Owned(
                        serde_json::from_str::<Details>(text)
                            .expect("cannot fail: the same text was parsed when the window opened"),
                    ),
                    _ => Cow::Owned(Details::None),
                };
                (parsed, DetailsColumn::Text { details, extra })
            }
        };
        let (mut nel_phase, mut nel_type, mut server_ip, mut elapsed_ms) = (None, None, None, 0);
        let (mut cert_hostname, mut cert_port) = ("", 0);
        match &*details {
            Details::NetworkError(nel) => {
                nel_phase = nel.phase.as_deref();
                nel_type = nel.error_type.as_deref();
                server_ip = nel.server_ip.as_deref();
                elapsed_ms = clamp_u32(nel.elapsed_time_ms);
            }
            Details::Certificate(cert) => {
                cert_hostname = &cert.hostname;
                cert_port = cert.port.unwrap_or(0);
            }
            _ => {}
        }

        let key = RowKey {
            row_id: window.row_id(),
            dedup_key: window.dedup_key,
            project_id: msg.project_id,
            window_start: seconds(window.window_start_ms),
            occurrences: u32::try_from(window.occurrences).unwrap_or(u32::MAX),
        };
        // Column by column, in `row::COLUMNS` order (RowBinary is positional; the tests hold
        // these bytes to the typed insert of the same row).
        rows.push_with(key, |w| {
            w.u64(key.row_id);
            w.u64(window.occurrences); // version
            w.u64(key.project_id);
            w.u16(u16::try_from(window.window_start_ms / 86_400_000).unwrap_or(u16::MAX)); // day
            w.u32(key.window_start);
            w.u32(seconds(window.first_seen_ms));
            w.u32(seconds(window.last_seen_ms));
            w.u32(key.occurrences);
            w.u64(u64::from_str_radix(msg.fingerprint, 16).unwrap_or(0));
            w.u64(key.dedup_key);
            w.str(msg.id); // message_id
            w.str(report.kind.as_str());
            w.text(report.report_type);
            w.str(report.wire.as_str());
            w.str(report.disposition.map_or("", Disposition::as_str));
            w.text(msg.environment);
            w.text(msg.release);
            w.text(report.document_url);
            w.str(&document.origin);
            w.str(&document.host);
            w.str(&document.path);
            w.text(report.referrer);
            w.text(report.blocked_url);
            w.str(report.blocked_class.as_str());
            w.str(&blocked.scheme);
            w.str(&blocked.host);
            w.str(&blocked.domain);
            w.concat(&blocked_origin);
            w.u8(u8::from(third_party));
            w.str(effective_directive);
            w.str(&directive::family(effective_directive));
            w.text(report.violated_directive);
            w.text(report.source_file);
            w.str(&source.host);
            w.u32(clamp_u32(report.line_number));
            w.u32(clamp_u32(report.column_number));
            w.text(report.sample);
            w.u16(report.status_code.unwrap_or(0));
            w.u64(policy_hash);
            w.text(report.original_policy);
            w.str(user_agent);
            w.str(&ua.family);
            w.str(&ua.major);
            w.str(&ua.os);
            w.str(&ua.device_class);
            w.str(client_ip);
            w.str(&country);
            w.text(msg.noise);
            w.text(nel_phase);
            w.text(nel_type);
            w.text(server_ip);
            w.u32(elapsed_ms);
            w.str(cert_hostname);
            w.u16(cert_port);
            match &details_column {
                DetailsColumn::Json(json) => w.str(json),
                DetailsColumn::Text {
                    details: None,
                    extra: None,
                } => w.str(""),
                DetailsColumn::Text { details, extra } => w.concat(&[
                    r#"{"details":"#,
                    details.unwrap_or(r#"{"type":"none"}"#),
                    r#","extra":"#,
                    extra.unwrap_or("{}"),
                    "}",
                ]),
            }
        });
    }

    /// The `reports` row of a closed window as a [`ReportRow`]: [`Self::write_row`] read back
    /// (tests and the micro-benchmarks; the pipeline keeps rows in RowBinary).
    pub fn row(&mut self, window: &ClosedWindow) -> ReportRow {
        let mut rows = Rows::default();
        self.write_row(window, &mut rows);
        rows.row(0).expect(
            "cannot fail: write_row appends exactly one row, and reading is the inverse of \
             writing (row::rowbinary tests)",
        )
    }
}

/// `scheme://host[:port]` for URLs, `scheme:` for data/blob/extension/other schemes (how a CSP
/// source expression allows them), else the blocked class label (`inline`, `eval`, ...); as the
/// two parts of the column's text.
fn blocked_origin(class: BlockedClass, blocked: &urls::UrlParts) -> [&str; 2] {
    match class {
        BlockedClass::Url if !blocked.origin.is_empty() => [&blocked.origin, ""],
        BlockedClass::Data
        | BlockedClass::Blob
        | BlockedClass::Extension
        | BlockedClass::OtherScheme
            if !blocked.scheme.is_empty() =>
        {
            [&blocked.scheme, ":"]
        }
        _ => [class.as_str(), ""],
    }
}

/// The `details` column: `{"details": .., "extra": ..}`, or empty when the report has neither.
enum DetailsColumn<'a> {
    /// Written by [`details_json`].
    Json(String),
    /// The same, from the JSON texts a binary payload holds: serde_json writes [`Details`] and
    /// `extra` as those texts were written, so the column is the same bytes (held to that over
    /// the corpora by `rowbinary_tests`).
    Text {
        details: Option<&'a str>,
        extra: Option<&'a str>,
    },
}

/// Whether details written by serde_json (the tag first) may fill the NEL or certificate
/// columns: every variant but `fields` and `unknown`, which fill none and are not parsed.
fn may_fill_columns(details: &str) -> bool {
    !(details.starts_with(r#"{"type":"fields""#) || details.starts_with(r#"{"type":"unknown""#))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod rowbinary_tests;
