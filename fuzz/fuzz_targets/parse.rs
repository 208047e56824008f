//! Arbitrary bytes through `schemas::Parser` (every body shape), then what ingest does with
//! each accepted report: noise verdict, fingerprint, dedup key, Kafka message.
//!
//! Checks, beyond "no panic, no sanitizer report":
//! - a parser reused across bodies (scratch buffers from earlier inputs) gives exactly the
//!   result of a fresh one;
//! - `ReportMessage::decode(encode(m)) == m` for every accepted report;
//! - the fingerprint of the decoded report equals the fingerprint of the parsed one.
//!
//! `schemas/tests/fuzz_regressions.rs` runs the same checks over `fuzz/corpus/parse` and
//! `fuzz/regressions/parse` on stable, so keep the two in step.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use schemas::{noise, ParseLimits, Parsed, Parser, ReportMessage};

thread_local! {
    /// Reused across inputs, like a pooled parser in ingest.
    static REUSED: RefCell<Parser> = RefCell::new(Parser::new(ParseLimits::default()));
}

fn same(a: &Result<Parsed, schemas::ParseError>, b: &Result<Parsed, schemas::ParseError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.items == b.items,
        (Err(a), Err(b)) => a.reason() == b.reason(),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut fresh_body = data.to_vec();
    let fresh = Parser::new(ParseLimits::default()).parse(&mut fresh_body);
    let mut reused_body = data.to_vec();
    let reused = REUSED.with(|parser| parser.borrow_mut().parse(&mut reused_body));
    assert!(
        same(&fresh, &reused),
        "reused parser disagrees: {fresh:?} vs {reused:?}"
    );
    let Ok(parsed) = fresh else {
        return;
    };
    for report in parsed.items.into_iter().flatten() {
        let noise = noise::classify(&report);
        let fingerprint = schemas::fingerprint(7, &report);
        let _ = schemas::dedup_key(fingerprint, "198.51.100.0");
        let message = ReportMessage {
            environment: Some("prod".into()),
            client_ip: Some("198.51.100.0".into()),
            noise: noise.map(|n| n.as_str().to_owned()),
            ..ReportMessage::new(
                "0193a1f0-0000-7000-8000-000000000000".into(),
                1_700_000_000_000,
                7,
                report,
            )
        };
        let bytes = message.encode();
        let decoded = ReportMessage::decode(&bytes).expect("own messages decode");
        assert_eq!(
            decoded,
            message,
            "message round trip: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(
            schemas::fingerprint(7, &decoded.report),
            fingerprint,
            "fingerprint changed through the message"
        );
        assert_eq!(noise::classify(&decoded.report), noise);
    }
});
