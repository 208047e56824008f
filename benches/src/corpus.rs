//! Request bodies for load and benchmarks, drawn from the repository's own real-world data,
//! classified and mixed.
//!
//! # Where the bodies come from
//!
//! Everything is embedded at compile time (`include_str!`), so the binaries need no data files
//! and every run posts the same bytes:
//!
//! - `schemas/tests/corpus/browsers-2015.jsonl`: 2,964 legacy `report-uri` CSP bodies from real
//!   browsers (the entries whose body was lost are skipped), with the content type each browser
//!   sent;
//! - `schemas/tests/corpus/field-reports.jsonl`: legacy CSP bodies pasted from production sites
//!   (the ones that are valid JSON);
//! - `schemas/tests/fixtures/*.json`: one body per Reporting API type (CSP, NEL, deprecation,
//!   intervention, crash, COEP, COOP, permissions policy, integrity), Safari's single object,
//!   Expect-CT, HPKP and the XSS Auditor. Their Reporting API items are also recombined into
//!   [`BATCH_SIZES`]-long batches, since browsers send batches of one to a few dozen reports.
//!
//! Every body is classified with the real parser ([`schemas::Parser`]): bodies with no valid
//! report are left out (they measure the refusal path, not the pipeline), and each [`Sample`]
//! knows its wire family, the kind of its first report, how many valid reports it holds and how
//! many of those the default noise classifier would filter.
//!
//! # Profiles
//!
//! [`Profile`] names a fixed [`Mix`]: `legacy` (~700-byte legacy CSP reports that ingest
//! publishes), `batch` (Reporting API batches), `mixed` (a weighted realistic mix, see
//! [`MIXED_WEIGHTS`]) and `corpus` (every classified body once, in turn).

use std::fmt;
use std::str::FromStr;

use schemas::{ParseLimits, Parser};

/// How a body is framed on the wire (decides the content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `report-uri` CSP (`{"csp-report": {...}}` or unwrapped legacy keys).
    LegacyCsp,
    /// Reporting API: a JSON array of reports (`application/reports+json`).
    ReportingBatch,
    /// Safari 16.4+: one Reporting API object under the legacy content type.
    ReportingSingle,
    /// Expect-CT, HPKP and the XSS Auditor: the other single-object legacy formats.
    OtherLegacy,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LegacyCsp => "legacy-csp",
            Self::ReportingBatch => "reporting-batch",
            Self::ReportingSingle => "reporting-single",
            Self::OtherLegacy => "other-legacy",
        }
    }
}

/// One request body, classified.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it comes from (`browsers-2015:2015-08-17`, `fixture:hpkp`, `batch:5:3`).
    pub name: String,
    pub body: bytes::Bytes,
    /// The `Content-Type` to send (the browser's own, for the 2015 corpus).
    pub content_type: &'static str,
    pub family: Family,
    /// [`schemas::ReportKind::as_str`] of the first valid report.
    pub kind: &'static str,
    /// Valid reports in the body (what a 2xx answer covers).
    pub reports: usize,
    /// Of those, how many the default noise classifier flags (filtered by a project with
    /// `default_noise`, the default).
    pub noise: usize,
    /// Byte offset in `body` just after `scheme://host` of the first document URL, where
    /// [`Sample::with_document_variant`] inserts a path segment. `None` when the body has no
    /// plain `http(s)` document URL (certificate reports, anonymised entries).
    pub document_host_end: Option<usize>,
}

impl Sample {
    /// The body with `/d{variant}` inserted after the document URL's host, so `variant` selects
    /// one of many distinct fingerprints. The body unchanged when it has no document URL.
    pub fn with_document_variant(&self, variant: u64) -> bytes::Bytes {
        match self.document_host_end {
            None => self.body.clone(),
            Some(at) => {
                let segment = format!("/d{variant}");
                let mut out = Vec::with_capacity(self.body.len() + segment.len());
                out.extend_from_slice(&self.body[..at]);
                out.extend_from_slice(segment.as_bytes());
                out.extend_from_slice(&self.body[at..]);
                out.into()
            }
        }
    }
}

/// Why the embedded corpus could not be turned into samples (a broken checkout).
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus line {line} of {file} is not valid JSON")]
    Line {
        file: &'static str,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("profile {0} has no samples")]
    Empty(Profile),
    #[error("unknown profile {0:?} (legacy, batch, mixed, corpus)")]
    UnknownProfile(String),
}

const BROWSERS_2015: &str = include_str!("../../schemas/tests/corpus/browsers-2015.jsonl");
const FIELD_REPORTS: &str = include_str!("../../schemas/tests/corpus/field-reports.jsonl");

/// Reporting API fixtures: arrays whose items are recombined into batches.
const REPORTING_FIXTURES: &[(&str, &str)] = &[
    (
        "chrome_reports_batch",
        include_str!("../../schemas/tests/fixtures/chrome_reports_batch.json"),
    ),
    (
        "nel_network_error",
        include_str!("../../schemas/tests/fixtures/nel_network_error.json"),
    ),
    (
        "deprecation",
        include_str!("../../schemas/tests/fixtures/deprecation.json"),
    ),
    (
        "intervention",
        include_str!("../../schemas/tests/fixtures/intervention.json"),
    ),
    (
        "crash",
        include_str!("../../schemas/tests/fixtures/crash.json"),
    ),
    (
        "coep",
        include_str!("../../schemas/tests/fixtures/coep.json"),
    ),
    (
        "coop",
        include_str!("../../schemas/tests/fixtures/coop.json"),
    ),
    (
        "permissions_policy_feature_id",
        include_str!("../../schemas/tests/fixtures/permissions_policy_feature_id.json"),
    ),
    (
        "integrity_violation_report_only",
        include_str!("../../schemas/tests/fixtures/integrity_violation_report_only.json"),
    ),
    (
        "disposition_reporting",
        include_str!("../../schemas/tests/fixtures/disposition_reporting.json"),
    ),
];

/// Single-object fixtures and the content type a browser sends them with.
const SINGLE_FIXTURES: &[(&str, &str, &str, Family)] = &[
    (
        "safari_single_csp",
        include_str!("../../schemas/tests/fixtures/safari_single_csp.json"),
        "application/csp-report",
        Family::ReportingSingle,
    ),
    (
        "expect_ct",
        include_str!("../../schemas/tests/fixtures/expect_ct.json"),
        "application/expect-ct-report+json",
        Family::OtherLegacy,
    ),
    (
        "hpkp",
        include_str!("../../schemas/tests/fixtures/hpkp.json"),
        "application/json",
        Family::OtherLegacy,
    ),
    (
        "xss_auditor",
        include_str!("../../schemas/tests/fixtures/xss_auditor.json"),
        "application/json",
        Family::OtherLegacy,
    ),
];

/// Reports per synthesised Reporting API batch, cycled. Chromium flushes its queue about once a
/// minute per origin, so most uploads hold one to a few reports and a busy page a few dozen.
pub const BATCH_SIZES: &[usize] = &[1, 1, 2, 2, 3, 4, 5, 8, 12, 20];

/// Synthesised batches (each [`BATCH_SIZES`] entry several times, with different items).
const BATCH_COUNT: usize = 60;

/// `legacy` profile: legacy CSP bodies of this many bytes (the 2015 corpus' median is ~725).
pub const LEGACY_BYTES: std::ops::RangeInclusive<usize> = 600..=800;

/// `mixed` profile: the share of each family, in parts per hundred. `report-uri` is still most
/// of the traffic (Firefox and every older site), Reporting API batches the rest, a trickle of
/// Safari single objects and dead certificate/XSS formats that old clients keep sending.
pub const MIXED_WEIGHTS: &[(Family, u32)] = &[
    (Family::LegacyCsp, 60),
    (Family::ReportingBatch, 30),
    (Family::ReportingSingle, 5),
    (Family::OtherLegacy, 5),
];

/// Every classified body of the embedded corpus (bodies with no valid report left out).
pub fn samples() -> Result<Vec<Sample>, CorpusError> {
    let mut parser = Parser::new(ParseLimits::default());
    let mut out = Vec::new();
    for (name, content_type, body) in legacy_bodies()? {
        if let Some(sample) = classify(
            &mut parser,
            name,
            body.into_bytes(),
            content_type,
            Family::LegacyCsp,
        ) {
            out.push(sample);
        }
    }
    for &(name, body, content_type, family) in SINGLE_FIXTURES {
        let name = format!("fixture:{name}");
        if let Some(sample) = classify(&mut parser, name, body.into(), content_type, family) {
            out.push(sample);
        }
    }
    for (name, body) in batches(&mut parser) {
        if let Some(sample) = classify(
            &mut parser,
            name,
            body.into_bytes(),
            "application/reports+json",
            Family::ReportingBatch,
        ) {
            out.push(sample);
        }
    }
    Ok(out)
}

/// The legacy CSP bodies of both corpora: (name, content type, body).
fn legacy_bodies() -> Result<Vec<(String, &'static str, String)>, CorpusError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        content_type: Option<String>,
        #[serde(default)]
        valid_json: Option<bool>,
        body: Option<String>,
    }
    let mut out = Vec::new();
    for (file, text) in [
        ("browsers-2015", BROWSERS_2015),
        ("field-reports", FIELD_REPORTS),
    ] {
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(line).map_err(|source| CorpusError::Line {
                file,
                line: index + 1,
                source,
            })?;
            let Some(body) = entry.body else { continue };
            if entry.valid_json == Some(false) {
                continue;
            }
            out.push((
                format!("{file}:{}", entry.id),
                legacy_content_type(entry.content_type.as_deref()),
                body,
            ));
        }
    }
    Ok(out)
}

/// The captured content type as a static string (the few values browsers use).
fn legacy_content_type(captured: Option<&str>) -> &'static str {
    match captured {
        Some("application/json") => "application/json",
        Some("application/json; charset=UTF-8") => "application/json; charset=UTF-8",
        _ => "application/csp-report",
    }
}

/// [`BATCH_COUNT`] Reporting API batches built from the valid items of the fixtures.
fn batches(parser: &mut Parser) -> Vec<(String, String)> {
    let mut items: Vec<String> = Vec::new();
    for (_, text) in REPORTING_FIXTURES {
        let Ok(serde_json::Value::Array(array)) = serde_json::from_str(text) else {
            continue;
        };
        for item in array {
            let mut one = format!("[{item}]").into_bytes();
            let valid = parser
                .parse(&mut one)
                .is_ok_and(|p| p.items.iter().all(Result::is_ok));
            if valid {
                items.push(item.to_string());
            }
        }
    }
    if items.is_empty() {
        return Vec::new();
    }
    let mut next = 0;
    (0..BATCH_COUNT)
        .map(|b| {
            let size = BATCH_SIZES[b % BATCH_SIZES.len()];
            let chosen: Vec<&str> = (0..size)
                .map(|_| {
                    let item = &items[next % items.len()];
                    next += 1;
                    item.as_str()
                })
                .collect();
            (
                format!("batch:{b}:{size}"),
                format!("[{}]", chosen.join(",")),
            )
        })
        .collect()
}

/// Parses `body` and describes it; `None` when it holds no valid report.
fn classify(
    parser: &mut Parser,
    name: String,
    body: Vec<u8>,
    content_type: &'static str,
    family: Family,
) -> Option<Sample> {
    let mut scratch = body.clone();
    let parsed = parser.parse(&mut scratch).ok()?;
    let reports: Vec<_> = parsed
        .items
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .collect();
    let first = reports.first()?;
    let noise = reports
        .iter()
        .filter(|r| schemas::noise::classify(r).is_some())
        .count();
    let document_host_end = document_host_end(&body);
    Some(Sample {
        name,
        kind: first.kind.as_str(),
        reports: reports.len(),
        noise,
        content_type,
        family,
        document_host_end,
        body: body.into(),
    })
}

/// Offset just after `scheme://host[:port]` of the first `document-uri`, `documentURL` or `url`
/// value in the body that is written as a plain (unescaped) `http(s)` URL.
fn document_host_end(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(body).ok()?;
    ["\"document-uri\"", "\"documentURL\"", "\"url\""]
        .iter()
        .filter_map(|key| {
            let after_key = text.find(key)? + key.len();
            let rest = &text[after_key..];
            let colon = rest.find(':')?;
            if !rest[..colon].trim().is_empty() {
                return None;
            }
            let value = rest[colon + 1..].trim_start().strip_prefix('"')?;
            let value_start = text.len() - value.len();
            let scheme = ["https://", "http://"]
                .iter()
                .find(|s| value.starts_with(**s))?;
            let host = &value[scheme.len()..];
            let host_len = host.find(['/', '"', '?', '#', '\\'])?;
            (host_len > 0).then_some((after_key, value_start + scheme.len() + host_len))
        })
        // The earliest key: the first report's document.
        .min()
        .map(|(_, end)| end)
}

/// A named, fixed mix of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Legacy CSP bodies of [`LEGACY_BYTES`] with one report that is not noise: the
    /// "~700-byte legacy report" of the performance target, every one published to Kafka.
    Legacy,
    /// The synthesised Reporting API batches.
    Batch,
    /// Every family, weighted by [`MIXED_WEIGHTS`] (noise included, as in real traffic).
    Mixed,
    /// Every classified body, each once in turn.
    Corpus,
}

impl Profile {
    pub const ALL: &'static [Profile] = &[Self::Legacy, Self::Batch, Self::Mixed, Self::Corpus];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Batch => "batch",
            Self::Mixed => "mixed",
            Self::Corpus => "corpus",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = CorpusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| CorpusError::UnknownProfile(s.to_owned()))
    }
}

/// Samples with integer weights; [`Mix::pick`] maps a sequence number to a sample.
#[derive(Debug, Clone)]
pub struct Mix {
    samples: Vec<Sample>,
    /// Running sum of the weights, same length as `samples`.
    cumulative: Vec<u64>,
}

impl Mix {
    /// The mix a profile stands for, built from [`samples`].
    pub fn new(profile: Profile) -> Result<Self, CorpusError> {
        Self::from_samples(profile, samples()?)
    }

    /// The mix a profile stands for, from already classified samples.
    pub fn from_samples(profile: Profile, all: Vec<Sample>) -> Result<Self, CorpusError> {
        let weighted: Vec<(Sample, u64)> = match profile {
            Profile::Legacy => all
                .into_iter()
                .filter(|s| {
                    s.family == Family::LegacyCsp
                        && LEGACY_BYTES.contains(&s.body.len())
                        && s.reports == 1
                        && s.noise == 0
                })
                .map(|s| (s, 1))
                .collect(),
            Profile::Batch => all
                .into_iter()
                .filter(|s| s.family == Family::ReportingBatch)
                .map(|s| (s, 1))
                .collect(),
            Profile::Corpus => all.into_iter().map(|s| (s, 1)).collect(),
            Profile::Mixed => {
                // Each family gets its share, split evenly over its samples: weight of a sample =
                // share x (product of family sizes / its family size) would overflow, so scale
                // by the total sample count instead (rounding error below 1 / sample count).
                let total = all.len() as u64;
                let count = |f: Family| all.iter().filter(|s| s.family == f).count() as u64;
                let counts: Vec<(Family, u64)> =
                    MIXED_WEIGHTS.iter().map(|&(f, _)| (f, count(f))).collect();
                all.into_iter()
                    .filter_map(|s| {
                        let share = MIXED_WEIGHTS.iter().find(|(f, _)| *f == s.family)?.1;
                        let family_len = counts.iter().find(|(f, _)| *f == s.family)?.1;
                        let weight = (u64::from(share) * total * 100 / family_len.max(1)).max(1);
                        Some((s, weight))
                    })
                    .collect()
            }
        };
        if weighted.is_empty() {
            return Err(CorpusError::Empty(profile));
        }
        let mut sum = 0;
        let mut samples = Vec::with_capacity(weighted.len());
        let mut cumulative = Vec::with_capacity(weighted.len());
        for (sample, weight) in weighted {
            sum += weight;
            samples.push(sample);
            cumulative.push(sum);
        }
        Ok(Self {
            samples,
            cumulative,
        })
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The sample for request number `sequence`: a deterministic pseudo-random draw by weight
    /// (the same sequence always gives the same sample, consecutive ones are decorrelated).
    pub fn pick(&self, sequence: u64) -> &Sample {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let point = splitmix64(sequence) % total;
        let index = self.cumulative.partition_point(|&c| c <= point);
        &self.samples[index.min(self.samples.len() - 1)]
    }

    /// Mean valid reports per body, by weight (what one 2xx answer stands for on average).
    pub fn mean_reports(&self) -> f64 {
        let mut previous = 0;
        let mut sum = 0.0;
        for (sample, &c) in self.samples.iter().zip(&self.cumulative) {
            sum += (c - previous) as f64 * sample.reports as f64;
            previous = c;
        }
        sum / previous.max(1) as f64
    }

    /// Mean body size in bytes, by weight.
    pub fn mean_bytes(&self) -> f64 {
        let mut previous = 0;
        let mut sum = 0.0;
        for (sample, &c) in self.samples.iter().zip(&self.cumulative) {
            sum += (c - previous) as f64 * sample.body.len() as f64;
            previous = c;
        }
        sum / previous.max(1) as f64
    }
}

/// A fast, well-mixing 64-bit hash (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_classified() {
        let all = samples().unwrap();
        // Most of the 2015 corpus is valid legacy CSP; the fixtures add every other family.
        let legacy = all.iter().filter(|s| s.family == Family::LegacyCsp).count();
        assert!(legacy > 2500, "{legacy} legacy bodies");
        for family in [
            Family::ReportingBatch,
            Family::ReportingSingle,
            Family::OtherLegacy,
        ] {
            assert!(all.iter().any(|s| s.family == family), "{family:?}");
        }
        let batch_reports: usize = all
            .iter()
            .filter(|s| s.family == Family::ReportingBatch)
            .map(|s| s.reports)
            .sum();
        assert_eq!(
            batch_reports,
            (0..BATCH_COUNT)
                .map(|b| BATCH_SIZES[b % BATCH_SIZES.len()])
                .sum::<usize>()
        );
        assert!(all.iter().all(|s| s.reports >= 1));
    }

    #[test]
    fn legacy_profile_is_publishable_700_byte_reports() {
        let mix = Mix::new(Profile::Legacy).unwrap();
        assert!(mix.samples().len() > 500, "{}", mix.samples().len());
        for s in mix.samples() {
            assert!(LEGACY_BYTES.contains(&s.body.len()));
            assert_eq!((s.reports, s.noise, s.kind), (1, 0, "csp-violation"));
        }
        let mean = mix.mean_bytes();
        assert!((600.0..800.0).contains(&mean), "{mean}");
    }

    #[test]
    fn mixed_profile_follows_the_weights() {
        let mix = Mix::new(Profile::Mixed).unwrap();
        let draws = 100_000u64;
        let legacy = (0..draws)
            .filter(|&i| mix.pick(i).family == Family::LegacyCsp)
            .count() as f64;
        let share = legacy / draws as f64;
        assert!((0.57..0.63).contains(&share), "{share}");
        assert!(mix.mean_reports() > 1.0);
    }

    #[test]
    fn document_variant_changes_the_fingerprint_input_only() {
        let all = samples().unwrap();
        let mut parser = Parser::new(ParseLimits::default());
        let with_url = all
            .iter()
            .filter(|s| s.document_host_end.is_some())
            .take(200);
        let mut checked = 0;
        for sample in with_url {
            let mut body = sample.with_document_variant(42).to_vec();
            let parsed = parser.parse(&mut body).unwrap();
            let first = parsed.items.iter().find_map(|r| r.as_ref().ok()).unwrap();
            let url = first.document_url.as_deref().unwrap_or_default();
            assert!(url.contains("/d42"), "{}: {url}", sample.name);
            checked += 1;
        }
        assert!(checked > 100);
        let hpkp = all.iter().find(|s| s.name == "fixture:hpkp").unwrap();
        assert_eq!(hpkp.with_document_variant(7), hpkp.body);
    }

    #[test]
    fn profiles_parse_by_name() {
        for p in Profile::ALL {
            assert_eq!(p.as_str().parse::<Profile>().unwrap(), *p);
        }
        assert!("nope".parse::<Profile>().is_err());
    }
}
