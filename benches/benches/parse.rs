//! Micro-benchmarks of the hot path inside ingest: parse + normalise, fingerprint, encode.
//!
//! `cargo bench -p benches --bench parse`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use schemas::{ParseLimits, Parser};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, body) in benches::samples::ALL {
        group.throughput(Throughput::Bytes(body.len() as u64));
        let mut parser = Parser::new(ParseLimits::default());
        group.bench_function(*name, |b| {
            b.iter_batched_ref(
                || body.as_bytes().to_vec(),
                |bytes| {
                    let parsed = parser.parse(bytes).expect("sample bodies are valid");
                    std::hint::black_box(parsed);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn fingerprint_and_encode(c: &mut Criterion) {
    let mut parser = Parser::new(ParseLimits::default());
    let mut body = benches::samples::LEGACY_CSP.as_bytes().to_vec();
    let report = parser
        .parse(&mut body)
        .expect("sample body is valid")
        .items
        .remove(0)
        .expect("sample report is valid");
    c.bench_function("fingerprint", |b| {
        b.iter(|| std::hint::black_box(schemas::fingerprint(42, &report)))
    });
    let message = schemas::ReportMessage {
        v: schemas::MESSAGE_VERSION,
        id: "0193a1f0-0000-7000-8000-000000000000".to_owned(),
        received_at_ms: 1_700_000_000_000,
        project_id: 42,
        environment: Some("production".to_owned()),
        release: None,
        client_ip: Some("192.0.2.0".to_owned()),
        request_user_agent: None,
        fingerprint: format!("{:016x}", schemas::fingerprint(42, &report)),
        noise: None,
        report,
    };
    c.bench_function("encode_message", |b| {
        b.iter(|| std::hint::black_box(message.encode()))
    });
}

criterion_group!(benches, parse, fingerprint_and_encode);
criterion_main!(benches);
