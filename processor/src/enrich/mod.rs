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
        let msg = &first.fields;
        let text = <Option<&[u8]>>::unwrap_or_default;

        let document = self.urls.parts(text(msg.document_url));
        let (blocked_parts, no_parts);
        let blocked: &urls::UrlParts = match msg.blocked_class {
            BlockedClass::Url
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::Extension
            | BlockedClass::OtherScheme => {
                blocked_parts = self.urls.parts(text(msg.blocked_url));
                &blocked_parts
            }
            _ => {
                no_parts = urls::UrlParts::default();
                &no_parts
            }
        };
        let blocked_origin = blocked_origin(msg.blocked_class, blocked);
        let third_party = msg.blocked_class == BlockedClass::Url
            && urls::third_party(&document.domain, &blocked.domain);
        let source = self.urls.parts(text(msg.source_file));
        let policy_hash = match msg.original_policy {
            None | Some(b"") => 0,
            Some(policy) => xxhash_rust::xxh3::xxh3_64(policy),
        };
        let effective_directive = text(msg.effective_directive);
        // Always UTF-8 (checked when the message arrived), and short.
        let effective_directive_text = String::from_utf8_lossy(effective_directive);
        // The Reporting API's per-report user_agent is the document's; the request header may
        // belong to a service worker or a relay.
        let user_agent = text(msg.user_agent.or(msg.request_user_agent));
        let ua = self.ua.classify(user_agent);
        let client_ip = text(msg.client_ip);
        let country = self.geo.country(client_ip);
        // The NEL and certificate columns need the details read; the details column is only
        // their JSON text, which a binary payload holds as it is.
        let mut parsed = None;
        let (details, details_column) = match first.json {
            HeldJson::InMessage { details, extra } => (
                DetailsColumns::of(details),
                DetailsColumn::Json(details_json(details, extra)),
            ),
            HeldJson::Text => (
                msg.details
                    .filter(|text| may_fill_columns(text))
                    .map_or(DetailsColumns::default(), |text| {
                        DetailsColumns::read(text, &mut parsed)
                    }),
                DetailsColumn::Text {
                    details: msg.details,
                    extra: msg.extra,
                },
            ),
        };

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
            w.u64(fingerprint(msg.fingerprint));
            w.u64(key.dedup_key);
            w.bytes(msg.id); // message_id
            w.str(msg.kind.as_str());
            w.text(msg.report_type);
            w.str(msg.wire.as_str());
            w.str(msg.disposition.map_or("", Disposition::as_str));
            w.text(msg.environment);
            w.text(msg.release);
            w.text(msg.document_url);
            w.str(&document.origin);
            w.str(&document.host);
            w.str(&document.path);
            w.text(msg.referrer);
            w.text(msg.blocked_url);
            w.str(msg.blocked_class.as_str());
            w.str(&blocked.scheme);
            w.str(&blocked.host);
            w.str(&blocked.domain);
            w.concat(&blocked_origin.map(str::as_bytes));
            w.u8(u8::from(third_party));
            w.bytes(effective_directive);
            w.str(&directive::family(&effective_directive_text));
            w.text(msg.violated_directive);
            w.text(msg.source_file);
            w.str(&source.host);
            w.u32(clamp_u32(msg.line_number));
            w.u32(clamp_u32(msg.column_number));
            w.text(msg.sample);
            w.u16(msg.status_code.unwrap_or(0));
            w.u64(policy_hash);
            w.text(msg.original_policy);
            w.bytes(user_agent);
            w.str(&ua.family);
            w.str(&ua.major);
            w.str(&ua.os);
            w.str(&ua.device_class);
            w.bytes(client_ip);
            w.str(&country);
            w.text(msg.noise);
            w.text(details.nel_phase);
            w.text(details.nel_type);
            w.text(details.server_ip);
            w.u32(details.elapsed_ms);
            w.bytes(details.cert_hostname);
            w.u16(details.cert_port);
            match &details_column {
                DetailsColumn::Json(json) => w.str(json),
                DetailsColumn::Text {
                    details: None,
                    extra: None,
                } => w.str(""),
                DetailsColumn::Text { details, extra } => w.concat(&[
                    br#"{"details":"#,
                    details.unwrap_or(br#"{"type":"none"}"#),
                    br#","extra":"#,
                    extra.unwrap_or(b"{}"),
                    b"}",
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
        details: Option<&'a [u8]>,
        extra: Option<&'a [u8]>,
    },
}

/// The columns filled from network-error and certificate details (empty or 0 otherwise).
#[derive(Debug, Default, PartialEq, Eq)]
struct DetailsColumns<'a> {
    nel_phase: Option<&'a [u8]>,
    nel_type: Option<&'a [u8]>,
    server_ip: Option<&'a [u8]>,
    elapsed_ms: u32,
    cert_hostname: &'a [u8],
    cert_port: u16,
}

impl<'a> DetailsColumns<'a> {
    fn of(details: &'a Details) -> Self {
        let text = |s: &'a Option<String>| s.as_deref().map(str::as_bytes);
        match details {
            Details::NetworkError(nel) => Self {
                nel_phase: text(&nel.phase),
                nel_type: text(&nel.error_type),
                server_ip: text(&nel.server_ip),
                elapsed_ms: clamp_u32(nel.elapsed_time_ms),
                ..Self::default()
            },
            Details::Certificate(cert) => Self {
                cert_hostname: cert.hostname.as_bytes(),
                cert_port: cert.port.unwrap_or(0),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    /// From details text a binary payload held (checked when it arrived): read without serde
    /// when it is in the compact form serde_json writes (`schemas::binary::compact`), which is
    /// what ingest writes; otherwise parsed into `parsed`, which the columns then borrow.
    fn read(text: &'a [u8], parsed: &'a mut Option<Details>) -> DetailsColumns<'a> {
        use schemas::binary::compact::{self, Summary};
        let summary = std::str::from_utf8(text).ok().and_then(compact::details);
        match summary {
            Some(Summary::NetworkError {
                phase,
                error_type,
                server_ip,
                elapsed_time_ms,
            }) => Self {
                nel_phase: phase.map(str::as_bytes),
                nel_type: error_type.map(str::as_bytes),
                server_ip: server_ip.map(str::as_bytes),
                elapsed_ms: clamp_u32(elapsed_time_ms),
                ..Self::default()
            },
            Some(Summary::Certificate { hostname, port }) => Self {
                cert_hostname: hostname.as_bytes(),
                cert_port: port.unwrap_or(0),
                ..Self::default()
            },
            Some(Summary::None | Summary::Fields | Summary::Unknown) => Self::default(),
            None => Self::of(
                parsed.insert(
                    serde_json::from_slice::<Details>(text)
                        .expect("cannot fail: the same text was checked when the window opened"),
                ),
            ),
        }
    }
}

/// Whether details written by serde_json (the tag first) may fill the NEL or certificate
/// columns: every variant but `fields` and `unknown`, which fill none and are not read.
fn may_fill_columns(details: &[u8]) -> bool {
    !(details.starts_with(br#"{"type":"fields""#) || details.starts_with(br#"{"type":"unknown""#))
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

/// The `fingerprint` column: the message's 16 hex digits, as `u64::from_str_radix(_, 16)`
/// reads them (0 if it does not).
fn fingerprint(hex: &[u8]) -> u64 {
    crate::decode::hex16(hex)
        .or_else(|| {
            let text = std::str::from_utf8(hex).ok()?;
            u64::from_str_radix(text, 16).ok()
        })
        .unwrap_or(0)
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
