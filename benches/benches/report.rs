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
//! - `report/privacy_apply`: [`ingest::privacy::apply`] (strip query and fragment, drop the
//!   referrer) on a clone of each report; the clone is measured in `report/clone` alone.
//! - `report/message_encode`, `report/message_decode`: [`schemas::ReportMessage`] JSON, with
//!   bytes throughput too.

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
                let mut report = report.clone();
                ingest::privacy::apply(&project.privacy, &mut report);
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
    group.finish();
}

criterion_group!(benches, per_report, message);
criterion_main!(benches);
