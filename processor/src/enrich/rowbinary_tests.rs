//! The enricher's RowBinary rows pinned to the typed insert they replaced: for every report of
//! the schemas fixtures and corpora, held as a binary payload and as a decoded JSON message,
//! [`Enricher::write_row`] writes exactly the bytes `clickhouse::Client::insert::<ReportRow>`
//! sent for the row the typed builder below (the enricher's `row` before rows were written in
//! RowBinary) made of the same window.

use std::num::NonZeroUsize;
use std::path::Path;

use schemas::{ParseLimits, Parser, Report, ReportMessage};

use super::*;
use crate::dedup::{CloseReason, Held};
use crate::row::rowbinary::tests::typed_insert_bytes;

/// The typed row, built as the enricher built it before (commit 6e4f192), from the same caches
/// (their values shared now, hence the clones).
struct Reference {
    ua: UaClassifier,
    urls: urls::UrlCache,
    geo: Geo,
}

impl Reference {
    fn row(&mut self, window: &ClosedWindow) -> ReportRow {
        let text = |s: Option<&str>| s.unwrap_or_default().to_owned();
        let msg = window.first.view();
        let report = &msg.report;

        fn bytes(s: Option<&str>) -> &[u8] {
            s.unwrap_or_default().as_bytes()
        }
        let document = self.urls.parts(bytes(report.document_url));
        let blocked = match report.blocked_class {
            BlockedClass::Url
            | BlockedClass::Data
            | BlockedClass::Blob
            | BlockedClass::Extension
            | BlockedClass::OtherScheme => self.urls.parts(bytes(report.blocked_url)),
            _ => Default::default(),
        };
        let blocked_origin = blocked_origin(report.blocked_class, &blocked).concat();
        let third_party = report.blocked_class == BlockedClass::Url
            && urls::third_party(&document.domain, &blocked.domain);
        let source_host = self.urls.host(bytes(report.source_file));
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
        let ua = self.ua.classify(user_agent.as_bytes());
        let client_ip = msg.client_ip.unwrap_or_default();
        let country = self.geo.country(client_ip.as_bytes());
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
            document_origin: document.origin.clone(),
            document_host: document.host.clone(),
            document_path: document.path.clone(),
            document_url: text(report.document_url),
            referrer: text(report.referrer),
            blocked_url: text(report.blocked_url),
            blocked_class: report.blocked_class.as_str().to_owned(),
            blocked_scheme: blocked.scheme.clone(),
            blocked_host: blocked.host.clone(),
            blocked_domain: blocked.domain.clone(),
            blocked_origin,
            third_party: u8::from(third_party),
            directive_family: directive::family(effective_directive).into_owned(),
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
            ua_family: ua.family.clone(),
            ua_major: ua.major.clone(),
            os_family: ua.os.clone(),
            device_class: ua.device_class.clone(),
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

/// Every report the parser accepts from the fixtures and both corpora.
fn reports() -> Vec<Report> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/tests");
    let mut bodies = Vec::new();
    let mut fixtures: Vec<_> = std::fs::read_dir(root.join("fixtures"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    fixtures.sort();
    for path in fixtures {
        bodies.push(std::fs::read_to_string(path).unwrap());
    }
    for corpus in ["browsers-2015.jsonl", "field-reports.jsonl"] {
        let text = std::fs::read_to_string(root.join("corpus").join(corpus)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(body) = entry["body"].as_str() {
                bodies.push(body.to_owned());
            }
        }
    }
    let mut parser = Parser::new(ParseLimits::default());
    let mut reports = Vec::new();
    for body in bodies {
        let mut bytes = body.into_bytes();
        if let Ok(parsed) = parser.parse(&mut bytes) {
            reports.extend(parsed.items.into_iter().flatten());
        }
    }
    reports
}

/// The message ingest would publish for report `i`, with the optional fields varied.
fn message(i: usize, report: Report) -> ReportMessage {
    let some = |bit: usize, text: &str| (i >> bit & 1 == 1).then(|| text.to_owned());
    ReportMessage {
        v: schemas::MESSAGE_VERSION,
        id: format!("0193a000-0000-7000-8000-{i:012x}"),
        received_at_ms: 1_700_000_000_000 + i as u64 * 997,
        project_id: 1 + (i as u64 % 3),
        environment: some(0, "production"),
        release: some(1, ""),
        client_ip: some(2, "203.0.113.0"),
        request_user_agent: some(3, "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0"),
        fingerprint: format!("{:016x}", schemas::fingerprint(1, &report)),
        noise: some(4, "extension"),
        report,
    }
}

fn window(i: usize, first: Held) -> ClosedWindow {
    let window_start_ms = 1_700_000_040_000 + (i as u64 % 5) * 60_000;
    ClosedWindow {
        partition: 0,
        dedup_key: i as u64 * 0x9e37_79b9,
        window_start_ms,
        first_offset: i as i64,
        last_offset: i as i64 + 3,
        occurrences: 1 + i as u64 % 4,
        first_seen_ms: window_start_ms + 17,
        last_seen_ms: window_start_ms + 59_999,
        first,
        reason: CloseReason::Watermark,
    }
}

#[test]
fn written_rows_are_what_the_typed_insert_sent_for_every_corpus_report() {
    let size = NonZeroUsize::new(64).unwrap();
    let mut enricher = Enricher::new(size, size, Geo::default());
    let mut reference = Reference {
        ua: UaClassifier::new(size),
        urls: urls::UrlCache::new(size),
        geo: Geo::default(),
    };
    let (mut from_binary, mut from_json) = (Rows::default(), Rows::default());
    let mut typed = Vec::new();
    let reports = reports();
    assert!(reports.len() > 3_000, "{} reports", reports.len());
    for (i, report) in reports.into_iter().enumerate() {
        let message = message(i, report);
        let binary = window(
            i,
            Held::Binary(schemas::binary::encode(&message).into_boxed_slice()),
        );
        // A JSON payload decodes to the same message (its JSON round trip is schemas' to pin).
        let json = window(i, Held::Owned(Box::new(message)));
        enricher.write_row(&binary, &mut from_binary);
        enricher.write_row(&json, &mut from_json);
        let row = reference.row(&json);
        assert_eq!(from_binary.row(i).unwrap(), row, "report {i}");
        typed.push(row);
    }
    assert_eq!(from_binary, from_json);
    let kinds: std::collections::BTreeSet<&str> = typed.iter().map(|r| r.kind.as_str()).collect();
    assert!(kinds.len() >= 10, "every report kind is reached: {kinds:?}");
    assert!(typed
        .iter()
        .any(|r| !r.nel_phase.is_empty() && !r.details.is_empty()));
    assert!(typed.iter().any(|r| r.cert_port != 0));
    assert!(typed.iter().any(|r| r.details.contains("\"extra\":{\"")));
    let all = 0..from_binary.len();
    assert_eq!(
        from_binary.bytes_of(all),
        typed_insert_bytes(&typed).as_slice()
    );
}
