//! The processor's per-row work: enrichment of a closed window into a `ReportRow` (with the
//! user-agent cache warm, and with every lookup missing it), user-agent classification alone, and
//! RowBinary encoding of a 1,000-row batch.
//!
//! `cargo bench -p benches --bench processor`
//!
//! Windows are built from the same report mix as `benches/report.rs` (every valid report of
//! the per-kind bodies and of the 2015 corpus, UAs from the corpus), one window per report,
//! wrapped in the message ingest would publish. One iteration processes the whole mix;
//! throughput is in rows (elements).
//! - `enrich/row_ua_cache_warm`: `Enricher::row` with a UA cache larger than the distinct UAs
//!   of the mix, warmed by one pass first (every lookup hits). No GeoIP database (as the default
//!   config), so `country` is an empty string. The windows hold their first messages as the
//!   pipeline holds a binary payload's (`processor::dedup::Held::Binary`), and `Enricher::row`
//!   reads them through a view (it took the window by value and cloned it per iteration
//!   before issue 13's held payloads).
//! - `enrich/row_ua_cache_miss`: the same with a 1-entry cache and windows whose UAs rotate
//!   through the mix's distinct UAs, so every lookup misses and woothee parses (the cold
//!   cache, or a cache too small for the traffic). Hit/miss counts are printed.
//! - `ua/classify_hit`, `ua/classify_miss`: `UaClassifier::classify` alone, same setups.
//! - `rowbinary/encode_1000_rows`: 1,000 enriched rows encoded in RowBinary into one reused
//!   buffer (`support::rowbinary`: why not the clickhouse crate's own serializer is explained
//!   there). Throughput in rows and bytes.

mod support;

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use processor::dedup::{CloseReason, ClosedWindow, Held};
use processor::enrich::UaClassifier;
use processor::{Enricher, Geo, ReportRow};
use schemas::ReportMessage;

fn window(index: usize, first: ReportMessage) -> ClosedWindow {
    let window_start_ms = 1_700_000_040_000 + (index as u64 % 60) * 60_000;
    ClosedWindow {
        partition: (index % 4) as i32,
        dedup_key: 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(index as u64 + 1),
        window_start_ms,
        first_offset: index as i64,
        last_offset: index as i64 + 3,
        occurrences: 1 + index as u64 % 7,
        first_seen_ms: window_start_ms + 1_500,
        last_seen_ms: window_start_ms + 59_000,
        first: Held::Binary(schemas::binary::encode(&first).into_boxed_slice()),
        reason: CloseReason::Watermark,
    }
}

fn messages() -> Vec<ReportMessage> {
    support::report_mix()
        .into_iter()
        .enumerate()
        .map(|(index, report)| support::message(index, report))
        .collect()
}

fn windows(messages: Vec<ReportMessage>) -> Vec<ClosedWindow> {
    messages
        .into_iter()
        .enumerate()
        .map(|(index, m)| window(index, m))
        .collect()
}

/// The distinct non-empty user agents of the messages, in first-seen order.
fn distinct_uas(messages: &[ReportMessage]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    messages
        .iter()
        .filter_map(|m| m.report.user_agent.clone())
        .filter(|ua| !ua.is_empty() && seen.insert(ua.clone()))
        .collect()
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}

fn enrich(c: &mut Criterion) {
    let messages = messages();
    let uas = distinct_uas(&messages);
    assert!(uas.len() > 1, "the mix needs several user agents");
    let big = NonZeroUsize::new(uas.len() * 2).unwrap_or(NonZeroUsize::MIN);
    // Every window gets a different UA from the one before it: a 1-entry cache always misses.
    let rotating: Vec<ClosedWindow> = messages
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let mut m = m.clone();
            m.report.user_agent = Some(uas[index % uas.len()].clone());
            window(index, m)
        })
        .collect();
    let windows = windows(messages);

    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(windows.len() as u64));

    let mut warm = Enricher::new(big, big, Geo::default());
    for w in &windows {
        black_box(warm.row(w));
    }
    let (_, warmed_misses) = warm.ua_cache_stats();
    group.bench_function("row_ua_cache_warm", |b| {
        b.iter(|| {
            for w in &windows {
                black_box(warm.row(black_box(w)));
            }
        })
    });
    let (hits, misses) = warm.ua_cache_stats();
    assert_eq!(misses, warmed_misses, "a warm cache never misses");
    let (url_hits, url_misses) = warm.url_cache_stats();
    eprintln!(
        "enrich/row_ua_cache_warm: {} windows, {} distinct UAs, ua cache hits {hits} misses {misses} (all during warm-up), url cache hits {url_hits} misses {url_misses}",
        windows.len(),
        uas.len()
    );

    // URLs not cached: a 1-entry URL cache (the mix rarely repeats a URL in consecutive
    // lookups), UA cache warm.
    let mut uncached = Enricher::new(big, one(), Geo::default());
    for w in &windows {
        black_box(uncached.row(w));
    }
    group.bench_function("row_url_cache_miss", |b| {
        b.iter(|| {
            for w in &windows {
                black_box(uncached.row(black_box(w)));
            }
        })
    });
    let (url_hits, url_misses) = uncached.url_cache_stats();
    eprintln!("enrich/row_url_cache_miss: url cache hits {url_hits} misses {url_misses}");

    let mut cold = Enricher::new(one(), big, Geo::default());
    group.bench_function("row_ua_cache_miss", |b| {
        b.iter(|| {
            for w in &rotating {
                black_box(cold.row(black_box(w)));
            }
        })
    });
    let (hits, misses) = cold.ua_cache_stats();
    assert_eq!(hits, 0, "a 1-entry cache with rotating UAs never hits");
    eprintln!("enrich/row_ua_cache_miss: ua cache hits {hits} misses {misses}");
    group.finish();

    let mut group = c.benchmark_group("ua");
    group.throughput(Throughput::Elements(rotating.len() as u64));
    let agents: Vec<&str> = rotating
        .iter()
        .map(|w| w.first.view().report.user_agent.unwrap_or_default())
        .collect();
    let mut warm = UaClassifier::new(big);
    for ua in &agents {
        black_box(warm.classify(ua.as_bytes()));
    }
    group.bench_function("classify_hit", |b| {
        b.iter(|| {
            for ua in &agents {
                black_box(warm.classify(black_box(ua.as_bytes())));
            }
        })
    });
    let mut cold = UaClassifier::new(one());
    group.bench_function("classify_miss", |b| {
        b.iter(|| {
            for ua in &agents {
                black_box(cold.classify(black_box(ua.as_bytes())));
            }
        })
    });
    assert_eq!(cold.stats().0, 0, "rotating UAs never hit a 1-entry cache");
    group.finish();
}

fn rowbinary(c: &mut Criterion) {
    support::rowbinary::check();
    const ROWS: usize = 1_000;
    let windows = windows(messages());
    let size = NonZeroUsize::new(4096).unwrap_or(one());
    let mut enricher = Enricher::new(size, size, Geo::default());
    let rows: Vec<ReportRow> = windows
        .iter()
        .cycle()
        .take(ROWS)
        .map(|w| enricher.row(w))
        .collect();
    let mut out = Vec::new();
    for row in &rows {
        if let Err(error) = support::rowbinary::encode(row, &mut out) {
            panic!("ReportRow encodes: {error}");
        }
    }
    let bytes = out.len();
    let mut group = c.benchmark_group("rowbinary");
    group.throughput(Throughput::ElementsAndBytes {
        elements: ROWS as u64,
        bytes: bytes as u64,
    });
    group.bench_function("encode_1000_rows", |b| {
        b.iter(|| {
            out.clear();
            for row in &rows {
                let encoded = support::rowbinary::encode(black_box(row), &mut out);
                black_box(encoded.is_ok());
            }
            black_box(out.len())
        })
    });
    group.finish();
    eprintln!("rowbinary: {ROWS} rows = {bytes} bytes");
}

criterion_group!(benches, enrich, rowbinary);
criterion_main!(benches);
