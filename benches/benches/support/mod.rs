//! What the micro-benchmarks share: request bodies read at bench start from the repository's own
//! corpus (`schemas/tests/corpus/*.jsonl`) and fixtures (`schemas/tests/fixtures/*.json`), the
//! reports parsed from them, and Kafka messages / closed windows built from those reports.
//!
//! Files are found through `env!("CARGO_MANIFEST_DIR")/../schemas/tests`, so the bench binaries
//! must run from a checkout (as `cargo bench` and `cargo test --benches` do). A missing or
//! changed file panics at start with the path: a benchmark must never quietly measure nothing.

// Each bench binary uses a different part of this module.
#![allow(dead_code)]

pub mod rowbinary;

use std::path::{Path, PathBuf};

use schemas::{ParseLimits, Parser, Report, ReportMessage};

/// `schemas/tests` of this checkout.
pub fn schemas_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/tests")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// One request body, named after the report kind and browser shape it stands for.
#[derive(Debug, Clone)]
pub struct Body {
    pub name: &'static str,
    /// Where it came from (corpus entry id or fixture file), for the README table.
    pub source: String,
    pub bytes: Vec<u8>,
}

/// One entry of `browsers-2015.jsonl` that has a body.
#[derive(Debug, Clone)]
pub struct CorpusEntry {
    pub id: String,
    pub browser: String,
    pub user_agent: String,
    pub body: String,
}

/// Every entry of `corpus/browsers-2015.jsonl` whose body the capture kept (3,000+ real legacy
/// CSP bodies from every browser of 2015).
pub fn browsers_2015() -> Vec<CorpusEntry> {
    let path = schemas_tests().join("corpus/browsers-2015.jsonl");
    read(&path)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}: bad line: {error}", path.display()));
            let text = |key: &str| entry[key].as_str().map(str::to_owned);
            Some(CorpusEntry {
                id: text("id")?,
                browser: text("browser")?,
                user_agent: text("user_agent").unwrap_or_default(),
                body: text("body")?,
            })
        })
        .collect()
}

/// The newest-version body of a browser family (`chrome`, `firefox`, `safari`) in the 2015
/// corpus: the latest shape that browser sent in the capture.
fn newest(entries: &[CorpusEntry], family: &str) -> CorpusEntry {
    let version = |entry: &CorpusEntry| -> Option<f64> {
        let mut words = entry.browser.split_whitespace();
        let name = words.next()?;
        if !name.eq_ignore_ascii_case(family) {
            return None;
        }
        words.next()?.parse().ok()
    };
    let mut best: Option<(f64, &CorpusEntry)> = None;
    for entry in entries {
        if let Some(v) = version(entry) {
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, entry));
            }
        }
    }
    best.unwrap_or_else(|| panic!("no {family} body in browsers-2015.jsonl"))
        .1
        .clone()
}

/// The first production report pasted in `corpus/field-reports.jsonl` that is valid JSON
/// (pretty-printed, as a CSP practitioner collected it).
fn field_report() -> Body {
    let path = schemas_tests().join("corpus/field-reports.jsonl");
    let text = read(&path);
    let entry = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["valid_json"] == serde_json::Value::Bool(true))
        .unwrap_or_else(|| panic!("no valid entry in {}", path.display()));
    Body {
        name: "legacy_csp_field_pretty",
        source: format!("field-reports.jsonl {}", entry["id"]),
        bytes: entry["body"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    }
}

fn fixture(name: &'static str, file: &str) -> Body {
    let path = schemas_tests().join("fixtures").join(file);
    Body {
        name,
        source: format!("fixtures/{file}"),
        bytes: read(&path).trim_end().as_bytes().to_vec(),
    }
}

/// One body per report kind and browser shape, in a stable order. Every one parses into at
/// least one valid report (checked here, so a fixture change cannot turn a bench into a
/// benchmark of the error path).
pub fn bodies() -> Vec<Body> {
    let corpus = browsers_2015();
    let mut bodies: Vec<Body> = [
        ("legacy_csp_chrome", "chrome"),
        ("legacy_csp_firefox", "firefox"),
        ("legacy_csp_safari", "safari"),
    ]
    .into_iter()
    .map(|(name, family)| {
        let entry = newest(&corpus, family);
        Body {
            name,
            source: format!("browsers-2015.jsonl {} ({})", entry.id, entry.browser),
            bytes: entry.body.into_bytes(),
        }
    })
    .collect();
    bodies.push(field_report());
    bodies.extend([
        fixture("reporting_batch_chrome", "chrome_reports_batch.json"),
        fixture("reporting_single_safari", "safari_single_csp.json"),
        fixture("nel_network_error", "nel_network_error.json"),
        fixture("deprecation", "deprecation.json"),
        fixture("intervention", "intervention.json"),
        fixture("crash", "crash.json"),
        fixture("expect_ct", "expect_ct.json"),
        fixture("hpkp", "hpkp.json"),
        fixture("xss_auditor", "xss_auditor.json"),
    ]);
    let mut parser = Parser::new(ParseLimits::default());
    for body in &bodies {
        let valid = reports_of(&mut parser, &body.bytes).len();
        assert!(
            valid > 0,
            "{} ({}) has no valid report",
            body.name,
            body.source
        );
    }
    bodies
}

/// The valid reports of one body (empty when the body is refused).
pub fn reports_of(parser: &mut Parser, body: &[u8]) -> Vec<Report> {
    let mut bytes = body.to_vec();
    parser
        .parse(&mut bytes)
        .map(|parsed| parsed.items.into_iter().filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Every valid report of [`bodies`], then of the whole 2015 corpus: a realistic mix for the
/// per-report benches (fingerprint, filter, enrichment).
pub fn report_mix() -> Vec<Report> {
    let mut parser = Parser::new(ParseLimits::default());
    let mut reports: Vec<Report> = bodies()
        .iter()
        .flat_map(|body| reports_of(&mut parser, &body.bytes))
        .collect();
    for entry in browsers_2015() {
        for mut report in reports_of(&mut parser, entry.body.as_bytes()) {
            // The 2015 capture keeps the UA beside the body (a legacy report has none inside).
            report.user_agent.get_or_insert(entry.user_agent.clone());
            reports.push(report);
        }
    }
    reports
}

/// The Kafka message ingest would publish for `report` (fingerprint computed for real).
pub fn message(index: usize, report: Report) -> ReportMessage {
    ReportMessage {
        environment: Some("production".to_owned()),
        release: Some("shop@1.4.2".to_owned()),
        client_ip: Some(format!("192.0.2.{}", index % 250)),
        ..ReportMessage::new(
            format!("0193a1f0-0000-7000-8000-{index:012x}"),
            1_700_000_000_000 + index as u64,
            42,
            report,
        )
    }
}
