//! Parsing and normalising one request body per report kind, as ingest does it.
//!
//! `cargo bench -p benches --bench parse` (add `-- --warm-up-time 1 --measurement-time 3` for a
//! quick run; `cargo test -p benches --benches` runs each once).
//!
//! Groups (throughput in body bytes, so criterion prints MiB/s):
//! - `parse/<kind>`: [`schemas::Parser::parse`], the real hot path: one `Parser` reused across
//!   iterations (simd-json's scratch buffers stay allocated), the body copied into one reused
//!   buffer first because simd-json parses in place. The copy is inside the timing; its cost is
//!   `copy/<kind>`, subtract it for the parser alone.
//! - `copy/<kind>`: that copy alone.
//! - `simd_json_value/<kind>`: the copy plus simd-json's `to_borrowed_value_with_buffers` with
//!   the same reused buffers, without any normalisation: how much of `parse` is JSON.
//! - `serde_json_value/<kind>`, for the record: `serde_json::from_slice::<serde_json::Value>`
//!   (the workspace's serde_json, `preserve_order` on) on the same bytes, no copy needed. It
//!   builds an owned DOM and normalises nothing, so it is the closest honest serde_json
//!   equivalent of `simd_json_value`, not of `parse` (the wire modules read simd-json borrowed
//!   values; they have no serde `Deserialize` form).
//! - `corpus/browsers_2015`: `parse` over every body of the 2015 capture in turn (about 3,000
//!   legacy CSP bodies from every browser of the time; some are refused, as in production).
//!   Throughput in reports and bytes.

mod support;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use schemas::{ParseLimits, Parser};

fn parse(c: &mut Criterion) {
    let bodies = support::bodies();
    let mut group = c.benchmark_group("parse");
    for body in &bodies {
        group.throughput(Throughput::Bytes(body.bytes.len() as u64));
        let mut parser = Parser::new(ParseLimits::default());
        let mut buffer = body.bytes.clone();
        group.bench_function(body.name, |b| {
            b.iter(|| {
                buffer.copy_from_slice(&body.bytes);
                black_box(parser.parse(black_box(&mut buffer)))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("copy");
    for body in &bodies {
        group.throughput(Throughput::Bytes(body.bytes.len() as u64));
        let mut buffer = body.bytes.clone();
        group.bench_function(body.name, |b| {
            b.iter(|| {
                buffer.copy_from_slice(black_box(&body.bytes));
                black_box(&mut buffer);
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("simd_json_value");
    for body in &bodies {
        group.throughput(Throughput::Bytes(body.bytes.len() as u64));
        let limits = ParseLimits::default();
        let mut buffers = simd_json::Buffers::with_max_depth(4096, limits.max_depth);
        let mut buffer = body.bytes.clone();
        group.bench_function(body.name, |b| {
            b.iter(|| {
                buffer.copy_from_slice(&body.bytes);
                let value =
                    simd_json::to_borrowed_value_with_buffers(black_box(&mut buffer), &mut buffers);
                black_box(value.is_ok())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("serde_json_value");
    for body in &bodies {
        group.throughput(Throughput::Bytes(body.bytes.len() as u64));
        group.bench_function(body.name, |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(
                    &body.bytes,
                )))
            })
        });
    }
    group.finish();
}

fn corpus(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = support::browsers_2015()
        .into_iter()
        .map(|entry| entry.body.into_bytes())
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let largest = bodies.iter().map(Vec::len).max().unwrap_or(0);
    let mut group = c.benchmark_group("corpus");
    group.throughput(Throughput::ElementsAndBytes {
        elements: bodies.len() as u64,
        bytes: bytes as u64,
    });
    let mut parser = Parser::new(ParseLimits::default());
    let mut buffer = Vec::with_capacity(largest);
    group.bench_function("browsers_2015", |b| {
        b.iter(|| {
            let mut valid = 0usize;
            for body in &bodies {
                buffer.clear();
                buffer.extend_from_slice(body);
                if let Ok(parsed) = parser.parse(&mut buffer) {
                    valid += parsed.items.iter().filter(|item| item.is_ok()).count();
                }
            }
            black_box(valid)
        })
    });
    group.finish();
}

criterion_group!(benches, parse, corpus);
criterion_main!(benches);
