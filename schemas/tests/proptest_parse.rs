//! Property tests: `Parser::parse` never panics, on arbitrary bytes or on mutated valid
//! reports, and whatever it accepts can be classified, fingerprinted and encoded.

mod support;

use proptest::prelude::*;
use schemas::{noise, ParseLimits, Parser, ReportMessage};
use support::mutation::{apply, mutation};

/// Valid bodies of every shape, the seeds the mutations start from.
const SEEDS: &[&str] = &[
    r#"{"csp-report":{"document-uri":"https://a.example/","blocked-uri":"inline","violated-directive":"script-src 'self'","line-number":"3","column-number":800000,"disposition":"reporting"}}"#,
    r#"[{"type":"csp-violation","age":"10","url":"https://a.example/","user_agent":"UA","body":{"documentURL":"https://a.example/","blockedURL":"data","effectiveDirective":"img-src"}},{"type":"network-error","age":1,"url":"https://a.example/x","body":{"phase":"dns","type":"dns.name_not_resolved","sampling_fraction":"1"}}]"#,
    r#"{"type":"permissions-policy-violation","url":"https://a.example/","body":{"featureId":"camera"}}"#,
    r#"{"expect-ct-report":{"hostname":"a.example","port":"443","scts":[{"version":1}]}}"#,
    r#"{"hostname":"a.example","known-pins":["pin-sha256=\"x\""],"include-subdomains":"true"}"#,
    r#"{"expect-staple-report":{"hostname":"a.example","cert-status":"REVOKED"}}"#,
    r#"{"document-uri":"about:blank","blocked-uri":"chrome-extension","violated-directive":"img-src"}"#,
    r#"{"xss-report":{"request-url":"https://a.example/?q=<script>"}}"#,
    r#"[{"type":"future","body":[1,"x",null]}]"#,
];

fn exercise(body: &mut [u8]) {
    let limits = ParseLimits {
        max_depth: 16,
        max_batch_len: 8,
        ..ParseLimits::default()
    };
    let Ok(parsed) = Parser::new(limits).parse(body) else {
        return;
    };
    for report in parsed.items.into_iter().flatten() {
        let _ = noise::classify(&report);
        let fingerprint = schemas::fingerprint(1, &report);
        let _ = schemas::dedup_key(fingerprint, "198.51.100.7");
        let message = support::message(report);
        let decoded = ReportMessage::decode(&message.encode()).expect("own messages decode");
        assert_eq!(decoded.fingerprint, message.fingerprint);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(mut body in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&mut body);
    }

    #[test]
    fn never_panics_on_mutated_reports(
        seed in prop::sample::select(SEEDS),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut body = seed.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut body, m);
        }
        exercise(&mut body);
    }

    #[test]
    fn never_panics_on_deep_or_long_bodies(depth in 0usize..64, items in 0usize..20) {
        let mut deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        exercise(&mut deep);
        let item = r#"{"type":"test","body":{}}"#;
        let mut long = format!("[{}]", vec![item; items].join(",")).into_bytes();
        exercise(&mut long);
    }
}

/// The seeds must be valid, or the mutation test only ever explores refusals.
#[test]
fn seeds_are_accepted() {
    for seed in SEEDS {
        let parsed = Parser::new(ParseLimits::default())
            .parse(&mut seed.as_bytes().to_vec())
            .unwrap_or_else(|e| panic!("{seed}: {e:?}"));
        assert!(parsed.items.iter().all(Result::is_ok), "{seed}: {parsed:?}");
    }
}
