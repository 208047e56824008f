//! What fuzzing found, kept in the normal `cargo test` (stable, no cargo-fuzz needed):
//!
//! - every committed seed of `fuzz/corpus/parse/` and every reproducer in
//!   `fuzz/regressions/parse/` goes through the checks of the `parse` fuzz target: no panic, a
//!   reused parser agrees with a fresh one, the Kafka message of each accepted report decodes
//!   to the same message, and its fingerprint and noise verdict survive the trip;
//! - `float_round_trip_is_exact`: the bug the fuzzer found (see `fuzz/regressions/README.md`).
//!
//! Keep [`check`] in step with `fuzz/fuzz_targets/parse.rs`.

mod support;

use std::path::{Path, PathBuf};

use schemas::{noise, ParseLimits, Parsed, Parser, ReportMessage};
use support::message;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", dir.display()))
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

fn same(a: &Result<Parsed, schemas::ParseError>, b: &Result<Parsed, schemas::ParseError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.items == b.items,
        (Err(a), Err(b)) => a.reason() == b.reason(),
        _ => false,
    }
}

/// The `parse` fuzz target's checks on one body; returns how many reports it accepted.
fn check(name: &str, body: &[u8], reused: &mut Parser) -> usize {
    let fresh = Parser::new(ParseLimits::default()).parse(&mut body.to_vec());
    let again = reused.parse(&mut body.to_vec());
    assert!(same(&fresh, &again), "{name}: a reused parser disagrees");
    let Ok(parsed) = fresh else {
        return 0;
    };
    let mut accepted = 0;
    for report in parsed.items.into_iter().flatten() {
        accepted += 1;
        let message = message(report);
        let decoded = ReportMessage::decode(&message.encode())
            .unwrap_or_else(|e| panic!("{name}: own message does not decode: {e}"));
        assert_eq!(decoded, message, "{name}: message round trip");
        assert_eq!(
            schemas::fingerprint(7, &decoded.report),
            schemas::fingerprint(7, &message.report),
            "{name}: fingerprint changed through the message"
        );
        assert_eq!(
            noise::classify(&decoded.report),
            noise::classify(&message.report),
            "{name}: noise verdict changed through the message"
        );
    }
    accepted
}

#[test]
fn corpus_seeds_and_reproducers_hold_the_fuzz_properties() {
    let mut reused = Parser::new(ParseLimits::default());
    let seeds = files("fuzz/corpus/parse");
    let reproducers = files("fuzz/regressions/parse");
    // The committed corpus is ~190 minimised seeds; far fewer means it was lost or not
    // minimised from the real fixtures, and this test would check little.
    assert!(seeds.len() >= 100, "only {} seeds", seeds.len());
    assert!(!reproducers.is_empty());
    let mut accepted = 0;
    for path in seeds.iter().chain(&reproducers) {
        let body = std::fs::read(path).expect("seed is readable");
        accepted += check(&path.display().to_string(), &body, &mut reused);
    }
    // Most seeds are real reports: if almost none is accepted the checks above ran on nothing.
    assert!(accepted >= seeds.len() / 2, "{accepted} reports accepted");
}

/// Found by the `parse` fuzz target on a real report (see `fuzz/regressions/README.md`): a
/// float with 17 significant digits does not survive `decode(encode(m))` unless serde_json is
/// built with `float_roundtrip`.
#[test]
fn float_round_trip_is_exact() {
    let mut parser = Parser::new(ParseLimits::default());
    let reproducers: Vec<PathBuf> = files("fuzz/regressions/parse")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("float-roundtrip"))
        .collect();
    assert_eq!(reproducers.len(), 2);
    for path in reproducers {
        let mut body = std::fs::read(&path).expect("reproducer is readable");
        let parsed = parser.parse(&mut body).expect("reproducer parses");
        for report in parsed.items.into_iter().flatten() {
            let message = message(report);
            let decoded = ReportMessage::decode(&message.encode()).expect("decodes");
            assert_eq!(decoded, message, "{}", path.display());
        }
    }
}
