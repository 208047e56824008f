//! Per-report work after parsing, in ingest's order: filtering (host allow-list, default noise,
//! ignore lists), privacy, fingerprint and dedup key, and the Kafka message encode (ingest) /
//! decode (processor).
//!
//! `cargo bench -p benches --bench report`
//!
//! Every bench runs over the same mix: every valid report of the per-kind bodies
//! (`support::bodies`) followed by every valid report of the 2015 corpus (about 3,000 legacy
//! CSP reports), so throughput is in reports (elements). One iteration processes the whole mix.
//! - `report/fingerprint`: [`schemas::fingerprint`] of each report.
//! - `report/dedup_key`: fingerprint then [`schemas::dedup_key`] with a truncated client IP.
//! - `report/blocked_origin_key` vs `report/blocked_origin_url_crate`: the blocked origin of
//!   each URL-class report (throughput in those URLs) by `schemas::blocked::origin_key` (plain
//!   URLs take a fast path) and by `url::Url` alone (what `origin_key` did before the fast path).
//! - `report/noise_classify`: [`schemas::noise::classify`] alone.
//! - `report/filter_judge`: [`ingest::filter::judge`] for a project built the way ingest builds
//!   it (`Snapshot::from_toml`) with an allow-list, default noise on and each ignore list set
//!   (the classifier runs inside it).
//! - `report/privacy_apply`: [`ingest::privacy::apply_parsed`] (strip query and fragment, drop
//!   the referrer) on a clone of each report, its text owned (ingest's reports borrow the body,
//!   where a stripped end is sliced off instead of truncated); the clone is measured in
//!   `report/clone` alone.
//! - `report/message_encode`, `report/message_decode`: [`schemas::ReportMessage`] JSON, with
//!   bytes throughput too (`message_decode` is `ReportMessage::decode`: a version probe, then
//!   the parse).
//! - `report/message_encode_binary`, `report/message_decode_binary`: the same messages in the
//!   binary layout (`schemas::binary`); throughput in the JSON bytes, so the figures compare.

mod support;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ingest::filter::{self, Verdict};
use ingest::projects::{Project, Snapshot};
use schemas::{Report, ReportMessage};

/// A project as an operator would write it: an allow-list that includes the corpus' hosts (so
/// reports go through every rule instead of stopping at the first), default noise on, and one
/// entry in every ignore list.
const PROJECT: &str = r#"
[[project]]
id = 42
name = "bench"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "benchkey" }]
allowed_hosts = ["45.55.25.245", "*.example", "example.com", "*.example.com", "app.example", "www.nicolas-hoffmann.net"]

[project.filters]
default_noise = true
ignore_blocked_hosts = ["*.doubleclick.net", "ads.example.org"]
ignore_source_hosts = ["*.extension-cdn.example"]
ignore_directives = ["font-src"]
ignore_document_hosts = ["staging.example.com"]

[project.privacy]
strip_query = true
strip_fragment = true
drop_referrer = true
client_ip = "truncate"
"#;

fn project() -> Arc<Project> {
    let snapshot = Snapshot::from_toml(PROJECT, None)
        .unwrap_or_else(|error| panic!("bench project file is valid: {error}"));
    snapshot
        .project(42)
        .unwrap_or_else(|| panic!("bench project 42 is defined above"))
        .clone()
}

fn per_report(c: &mut Criterion) {
    let reports: Vec<Report> = support::report_mix();
    let project = project();
    let mut group = c.benchmark_group("report");
    group.throughput(Throughput::Elements(reports.len() as u64));

    group.bench_function("fingerprint", |b| {
        b.iter(|| {
            for report in &reports {
                black_box(schemas::fingerprint(42, black_box(report)));
            }
        })
    });
    let client = IpAddr::from([192, 0, 2, 77]);
    group.bench_function("dedup_key", |b| {
        b.iter(|| {
            for report in &reports {
                let ip = ingest::privacy::client_ip(&project.privacy, client).unwrap_or_default();
                let fp = schemas::fingerprint(42, black_box(report));
                black_box(schemas::dedup_key(fp, &ip));
            }
        })
    });
    // The blocked origin of every URL-class report, by schemas' `origin_key` (plain URLs take a
    // fast path, the rest `url::Url`) and by `url::Url` alone, as `origin_key` did before: the
    // before/after of that change, on the same inputs.
    let urls: Vec<&str> = reports
        .iter()
        .filter(|r| r.blocked_class == schemas::BlockedClass::Url)
        .filter_map(|r| r.blocked_url.as_deref())
        .collect();
    for url in &urls {
        assert_eq!(
            schemas::blocked::origin_key(schemas::BlockedClass::Url, Some(url)),
            origin_by_url_crate(url),
            "{url}"
        );
    }
    eprintln!("report mix: {} URL-class blocked URIs", urls.len());
    group.throughput(Throughput::Elements(urls.len() as u64));
    group.bench_function("blocked_origin_key", |b| {
        b.iter(|| {
            for url in &urls {
                black_box(schemas::blocked::origin_key(
                    schemas::BlockedClass::Url,
                    Some(black_box(url)),
                ));
            }
        })
    });
    group.bench_function("blocked_origin_url_crate", |b| {
        b.iter(|| {
            for url in &urls {
                black_box(origin_by_url_crate(black_box(url)));
            }
        })
    });
    group.throughput(Throughput::Elements(reports.len() as u64));
    group.bench_function("noise_classify", |b| {
        b.iter(|| {
            for report in &reports {
                black_box(schemas::noise::classify(black_box(report)));
            }
        })
    });
    let verdicts = verdict_counts(&project, &reports);
    eprintln!(
        "report mix: {} reports; filter verdicts: keep {}, filtered {}, host not allowed {}",
        reports.len(),
        verdicts[0],
        verdicts[1],
        verdicts[2]
    );
    group.bench_function("filter_judge", |b| {
        b.iter(|| {
            for report in &reports {
                black_box(filter::judge(&project, black_box(report)));
            }
        })
    });
    // The same verdicts by the filter as it was before its matchers were compiled (issue 13):
    // `url::Url` for every URL's host, lowercased copies, pattern lists scanned.
    let before = filter_before::Lists::of(PROJECT);
    for report in &reports {
        assert_eq!(
            filter_before::judge(&project, &before, report),
            filter::judge(&project, report),
            "{report:?}"
        );
    }
    group.bench_function("filter_judge_before", |b| {
        b.iter(|| {
            for report in &reports {
                black_box(filter_before::judge(&project, &before, black_box(report)));
            }
        })
    });
    group.bench_function("clone", |b| {
        b.iter(|| {
            for report in &reports {
                black_box(report.clone());
            }
        })
    });
    group.bench_function("privacy_apply", |b| {
        b.iter(|| {
            for report in &reports {
                let mut report = schemas::parse::ParsedReport::from(report.clone());
                ingest::privacy::apply_parsed(&project.privacy, &mut report);
                black_box(report);
            }
        })
    });
    group.finish();
}

/// `origin_key` for a URL before the fast path: always through the WHATWG parser.
fn origin_by_url_crate(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.has_host() => parsed.origin().ascii_serialization(),
        _ => schemas::blocked::strip_query(url).to_owned(),
    }
}

/// (keep, filtered, host not allowed): printed so the README can say what `filter_judge` did.
fn verdict_counts(project: &Project, reports: &[Report]) -> [usize; 3] {
    let mut counts = [0; 3];
    for report in reports {
        let slot = match filter::judge(project, report) {
            Verdict::Keep { .. } => 0,
            Verdict::Filtered(_) => 1,
            Verdict::HostNotAllowed => 2,
        };
        counts[slot] += 1;
    }
    counts
}

fn message(c: &mut Criterion) {
    let messages: Vec<ReportMessage> = support::report_mix()
        .into_iter()
        .enumerate()
        .map(|(index, report)| support::message(index, report))
        .collect();
    let encoded: Vec<Vec<u8>> = messages.iter().map(ReportMessage::encode).collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    for (message, bytes) in messages.iter().zip(&encoded) {
        let decoded = ReportMessage::decode(bytes)
            .unwrap_or_else(|error| panic!("encoded message decodes: {error}"));
        assert_eq!(&decoded, message, "message round trip");
    }
    let mut group = c.benchmark_group("report");
    group.throughput(Throughput::ElementsAndBytes {
        elements: messages.len() as u64,
        bytes: bytes as u64,
    });
    group.bench_function("message_encode", |b| {
        b.iter(|| {
            for message in &messages {
                black_box(black_box(message).encode());
            }
        })
    });
    group.bench_function("message_decode", |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(ReportMessage::decode(black_box(bytes)).is_ok());
            }
        })
    });
    let binary: Vec<Vec<u8>> = messages.iter().map(schemas::binary::encode).collect();
    for (message, bytes) in messages.iter().zip(&binary) {
        let decoded = ReportMessage::decode(bytes)
            .unwrap_or_else(|error| panic!("binary message decodes: {error}"));
        assert_eq!(&decoded, message, "binary round trip");
    }
    eprintln!(
        "messages: {} JSON bytes, {} binary bytes",
        bytes,
        binary.iter().map(Vec::len).sum::<usize>()
    );
    group.bench_function("message_encode_binary", |b| {
        b.iter(|| {
            for message in &messages {
                black_box(schemas::binary::encode(black_box(message)));
            }
        })
    });
    group.bench_function("message_decode_binary", |b| {
        b.iter(|| {
            for bytes in &binary {
                black_box(ReportMessage::decode(black_box(bytes)).is_ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, per_report, message);
criterion_main!(benches);

/// `ingest::filter::judge` as it was before issue 13 (kept to measure the change on the same
/// inputs): hosts by `url::Url` and lowercased into new `String`s, patterns in lists.
mod filter_before {
    use ingest::filter::Verdict;
    use ingest::projects::{HostPattern, Project};
    use schemas::Report;

    /// The project's host patterns as lists (what `Project` held before).
    pub struct Lists {
        allowed: Vec<HostPattern>,
        document: Vec<HostPattern>,
        blocked: Vec<HostPattern>,
        source: Vec<HostPattern>,
    }

    impl Lists {
        /// The lists of the bench project file (its `allowed_hosts` and ignore lists).
        pub fn of(toml_text: &str) -> Self {
            let value: toml::Value = toml::from_str(toml_text).expect("bench project is toml");
            let project = &value["project"][0];
            let list = |v: Option<&toml::Value>| -> Vec<HostPattern> {
                v.and_then(toml::Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().and_then(HostPattern::parse))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let filters = project.get("filters");
            let filter = |name: &str| list(filters.and_then(|f| f.get(name)));
            Self {
                allowed: list(project.get("allowed_hosts")),
                document: filter("ignore_document_hosts"),
                blocked: filter("ignore_blocked_hosts"),
                source: filter("ignore_source_hosts"),
            }
        }
    }

    fn any_match(patterns: &[HostPattern], host: &str) -> bool {
        patterns.iter().any(|p| p.matches(host))
    }

    pub fn judge(project: &Project, lists: &Lists, report: &Report) -> Verdict {
        if !lists.allowed.is_empty()
            && !document_host(report)
                .as_deref()
                .is_some_and(|h| any_match(&lists.allowed, h))
        {
            return Verdict::HostNotAllowed;
        }
        let noise = schemas::noise::classify(report);
        let filters = &project.filters;
        if filters.default_noise {
            if let Some(reason) = noise {
                return Verdict::Filtered(reason.as_str());
            }
        }
        let listed = |patterns: &[HostPattern], url: Option<&str>| {
            !patterns.is_empty()
                && url
                    .and_then(host_of)
                    .is_some_and(|h| any_match(patterns, &h))
        };
        if listed(&lists.document, report.document_url.as_deref()) {
            return Verdict::Filtered("ignored_document_host");
        }
        if listed(&lists.blocked, report.blocked_url.as_deref()) {
            return Verdict::Filtered("ignored_blocked_host");
        }
        if let Some(directive) = &report.effective_directive {
            if filters
                .directives
                .iter()
                .any(|d| d.eq_ignore_ascii_case(directive))
            {
                return Verdict::Filtered("ignored_directive");
            }
        }
        if listed(&lists.source, report.source_file.as_deref()) {
            return Verdict::Filtered("ignored_source_host");
        }
        Verdict::Keep {
            noise: if filters.default_noise { None } else { noise },
        }
    }

    fn document_host(report: &Report) -> Option<String> {
        if let Some(host) = report.document_url.as_deref().and_then(host_of) {
            return Some(host);
        }
        match &report.details {
            schemas::Details::Certificate(c) if !c.hostname.is_empty() => {
                Some(c.hostname.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    fn host_of(value: &str) -> Option<String> {
        if value.contains("://") {
            let url = url::Url::parse(value).ok()?;
            return url
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        }
        let authority = value.split(['/', '?', '#']).next()?;
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        valid.then(|| host.to_ascii_lowercase())
    }
}
