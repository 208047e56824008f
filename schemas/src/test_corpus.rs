//! Test data shared by the crate's unit tests: the repository's corpora and fixtures.

use std::path::Path;

use crate::report::Report;
use crate::{ParseLimits, Parser};

/// Every report the parser accepts from the corpora (`tests/corpus/*.jsonl`) and the fixtures
/// (`tests/fixtures/*.json`).
pub(crate) fn reports() -> Vec<Report> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut bodies = Vec::new();
    for corpus in ["browsers-2015.jsonl", "field-reports.jsonl"] {
        let text = std::fs::read_to_string(root.join("corpus").join(corpus)).expect("corpus");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line).expect("jsonl");
            if let Some(body) = entry["body"].as_str() {
                bodies.push(body.as_bytes().to_vec());
            }
        }
    }
    for file in std::fs::read_dir(root.join("fixtures")).expect("fixtures") {
        let path = file.expect("fixture").path();
        if path.extension().is_some_and(|e| e == "json") {
            bodies.push(std::fs::read(path).expect("fixture"));
        }
    }
    let mut parser = Parser::new(ParseLimits::default());
    bodies
        .iter_mut()
        .filter_map(|body| parser.parse(body).ok())
        .flat_map(|parsed| parsed.items.into_iter().flatten())
        .collect()
}
