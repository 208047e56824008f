//! Runs the real-world corpora (`tests/corpus/`, see its README) through the parser: nothing
//! panics, every entry has exactly one counted outcome, and the totals are pinned so a change
//! in what we accept, filter or refuse shows up as a failing test with a readable diff.

use std::collections::BTreeMap;
use std::path::Path;

use schemas::{noise, ParseError, ParseLimits, Parser};
use serde_json::Value;

/// Outcome counters, keyed `accepted/<kind>`, `noise/<reason>`, `refused/<reason>`,
/// `item_refused/<reason>` (a bad item in an otherwise accepted batch), `no_body`.
type Counts = BTreeMap<String, usize>;

fn bump(counts: &mut Counts, key: String) {
    *counts.entry(key).or_default() += 1;
}

/// Runs one JSONL corpus file and counts outcomes. Returns the counts and the number of lines.
fn run(file: &str) -> (Counts, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("corpus file is readable");
    let mut parser = Parser::new(ParseLimits::default());
    let mut counts = Counts::new();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        let entry: Value = serde_json::from_str(line).expect("corpus lines are json");
        let Some(body) = entry["body"].as_str() else {
            bump(&mut counts, "no_body".into());
            continue;
        };
        let mut bytes = body.as_bytes().to_vec();
        match parser.parse(&mut bytes) {
            Err(error) => {
                // Refusals must match the dataset's own verdict on validity.
                if let Some(valid) = entry["valid_json"].as_bool() {
                    assert_eq!(
                        valid,
                        !matches!(error, ParseError::NotJson(_)),
                        "{}",
                        entry["id"]
                    );
                }
                bump(&mut counts, format!("refused/{}", error.reason()))
            }
            Ok(parsed) => {
                assert_ne!(
                    entry["valid_json"].as_bool(),
                    Some(false),
                    "{}",
                    entry["id"]
                );
                for item in parsed.items {
                    match item {
                        Ok(report) => match noise::classify(&report) {
                            Some(reason) => bump(&mut counts, format!("noise/{}", reason.as_str())),
                            None => bump(&mut counts, format!("accepted/{}", report.kind.as_str())),
                        },
                        Err(error) => bump(&mut counts, format!("item_refused/{}", error.reason())),
                    }
                }
            }
        }
    }
    print_table(file, &counts, lines);
    (counts, lines)
}

fn print_table(file: &str, counts: &Counts, lines: usize) {
    println!("{file}: {lines} entries");
    for (key, n) in counts {
        println!("  {key:<40} {n:>6}");
    }
}

/// Runs `file`, a corpus of single-report entries: `lines` entries, one outcome each, and
/// exactly the `outcomes` counts.
fn check_single_reports(file: &str, lines: usize, outcomes: &[(&str, usize)]) {
    let (counts, seen) = run(file);
    assert_eq!(seen, lines);
    assert_eq!(
        counts.values().sum::<usize>(),
        lines,
        "one outcome per single-report entry"
    );
    let expected: Counts = outcomes
        .iter()
        .map(|(k, n)| ((*k).to_owned(), *n))
        .collect();
    assert_eq!(counts, expected);
}

#[test]
fn browsers_2015() {
    // 385 bodies were lost by the capturing server (form-urlencoded posts); 152 blocked
    // `filesystem:http://127.0.0.1:4000/...` (the tester's local server) are noise by host; 37
    // are `about`/`android-webview*` blocks or Selenium's `safari-extension://` source files.
    check_single_reports(
        "browsers-2015.jsonl",
        3349,
        &[
            ("accepted/csp-violation", 2775),
            ("no_body", 385),
            ("noise/noise_host", 152),
            ("noise/noise_scheme", 37),
        ],
    );
}

#[test]
fn field_reports() {
    // The 24 refusals are exactly the entries the dataset marks `valid_json: false` (pasted
    // with `...` elisions); extension schemes, injected samples and about:blank documents are
    // filtered; everything else (including `[anonymised]` documents) is accepted.
    check_single_reports(
        "field-reports.jsonl",
        289,
        &[
            ("accepted/csp-violation", 248),
            ("noise/injected_sample", 2),
            ("noise/noise_scheme", 12),
            ("noise/non_web_document", 3),
            ("refused/invalid_json", 24),
        ],
    );
}
