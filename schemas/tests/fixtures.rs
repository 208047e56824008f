//! One fixture per browser quirk (`tests/fixtures/*.json`), each parsed and its normalised
//! output (reports, noise verdicts, fingerprints, per-item errors) snapshotted with insta.
//!
//! A snapshot change is a behaviour change: review the diff, then accept it deliberately
//! (`INSTA_UPDATE=always cargo test -p schemas --test fixtures`).

use std::path::{Path, PathBuf};

use schemas::{noise, ParseLimits, Parser, ReportKind};
use serde_json::{json, Value};

/// Project id used for every fingerprint in the snapshots.
const PROJECT: u64 = 7;

fn fixture_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
}

/// The normalised outcome of one body, as snapshotted.
fn outcome(body: &[u8]) -> Value {
    let mut bytes = body.to_vec();
    match Parser::new(ParseLimits::default()).parse(&mut bytes) {
        Err(error) => json!({ "refused": error.reason(), "error": error.to_string() }),
        Ok(parsed) => {
            let items: Vec<Value> = parsed
                .items
                .into_iter()
                .map(|item| match item {
                    Ok(report) => json!({
                        "noise": noise::classify(&report).map(|reason| reason.as_str()),
                        "fingerprint": format!("{:016x}", schemas::fingerprint(PROJECT, &report)),
                        "report": report,
                    }),
                    Err(error) => json!({ "error": error.reason(), "detail": error.to_string() }),
                })
                .collect();
            json!({ "items": items })
        }
    }
}

#[test]
fn every_fixture_matches_its_snapshot() {
    let paths = fixture_paths();
    assert!(paths.len() >= 41, "fixtures went missing: {}", paths.len());
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 file name")
            .to_owned();
        let body = std::fs::read(&path).expect("readable fixture");
        insta::assert_json_snapshot!(name, outcome(&body));
    }
}

/// Every report kind is covered by at least one accepted fixture, so a new kind without a
/// fixture fails here.
#[test]
fn fixtures_cover_every_kind() {
    let mut seen = std::collections::HashSet::new();
    for path in fixture_paths() {
        let mut body = std::fs::read(&path).expect("readable fixture");
        if let Ok(parsed) = Parser::new(ParseLimits::default()).parse(&mut body) {
            seen.extend(parsed.items.into_iter().flatten().map(|report| report.kind));
        }
    }
    let missing: Vec<_> = ReportKind::ALL
        .iter()
        .filter(|kind| !seen.contains(kind))
        .collect();
    assert!(missing.is_empty(), "kinds without a fixture: {missing:?}");
}

/// Regression: the same report serialised and parsed back is unchanged (the processor reads
/// what ingest wrote).
#[test]
fn normalised_reports_round_trip_through_json() {
    for path in fixture_paths() {
        let mut body = std::fs::read(&path).expect("readable fixture");
        let Ok(parsed) = Parser::new(ParseLimits::default()).parse(&mut body) else {
            continue;
        };
        for report in parsed.items.into_iter().flatten() {
            let json = serde_json::to_vec(&report).expect("serialises");
            let back: schemas::Report = serde_json::from_slice(&json).expect("deserialises");
            assert_eq!(back, report, "{}", path.display());
        }
    }
}
