//! Properties of the parser over generated *valid* reports of every kind (legacy CSP wrapped
//! and unwrapped, Reporting API csp-violation / network-error / deprecation, intervention and
//! the other typed bodies / unknown types, Expect-CT, Expect-Staple, HPKP, XSS Auditor), each
//! built as a `serde_json::Value` with random field values:
//!
//! - `never_panics_on_mutated_valid_bodies`: byte edits of a valid body never panic the parser.
//! - `normalisation_is_idempotent`: normalising is a fixed point. The normalised [`Report`]
//!   written back to its own wire format ([`to_wire`]: the canonical key spelling, the stored
//!   normalised values, `extra` alongside) parses to the same `Report`; and its Kafka message
//!   decodes to the same `Report` with the same fingerprint.
//! - `key_order_does_not_matter`: shuffling the keys of every object gives the same result,
//!   also when a field is sent twice under two accepted spellings (`document-uri` and
//!   `documentURL`, `lineno` and `line-number`) with different values: which one wins depends
//!   on the spellings, never on their order. Documented exception: the *same* key twice in one
//!   object (`{"document-uri":"a","document-uri":"b"}`, which RFC 8259 leaves undefined and no
//!   browser sends) is not an order question: the last occurrence wins, as in `JSON.parse`, and
//!   the earlier one is dropped (`wire::fields`).
//! - `numbers_as_strings_do_not_matter`: numeric fields sent as strings (and booleans as
//!   `"true"`), and digit-only values of lenient string fields sent as numbers, give the same
//!   result. Exceptions, by design: `hostname` and the Reporting API `type` must be strings
//!   (`wrong_type`); the body of an unknown type is kept verbatim, so it is not generated here.
//! - `array_wrapping_is_reporting_only`: a single Reporting API object and the same object in a
//!   one-element array give the same report (only `wire` differs: `reporting-single` vs
//!   `reporting-batch`). Every other shape has no array form (only the Reporting API batches): wrapped in an
//!   array it is refused as a batch item without `type`, never misread.
//!
//! Floats are generated with at most 4 decimals (real sampling fractions and timestamps): see
//! `fuzz_regressions.rs` for full-precision floats and why they need serde_json's
//! `float_roundtrip` feature.

mod support;

use proptest::prelude::*;
use schemas::directive::KNOWN_DIRECTIVES;
use schemas::{
    BlockedClass, Details, ParseError, ParseLimits, Parsed, Parser, Report, ReportKind,
    ReportMessage, WireFormat,
};
use serde_json::{json, Map, Value};
use support::message;
use support::mutation::{apply, mutation};

// ---------------------------------------------------------------------------------------------
// Generators of field values.

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        "https://[a-z]{1,8}\\.example(:[0-9]{2,4})?/[a-z0-9/._-]{0,12}(\\?[a-z]{1,4}=[a-z0-9]{0,4})?(#[a-z]{0,4})?",
        "http://[a-z]{1,6}\\.(test|example|com)/[a-z]{0,6}",
        Just("about:blank".to_owned()),
    ]
}

fn blocked() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => url(),
        1 => prop::sample::select(vec![
            "inline", "eval", "wasm-eval", "data", "blob", "self", "'self'", "", "null",
            "trusted-types-sink", "trusted-types-policy", "chrome-extension", "about",
            "moz-extension", "android-webview", "'unsafe-inline'",
        ])
        .prop_map(str::to_owned),
        1 => "(data|blob|chrome-extension|filesystem):[a-z0-9/+=]{0,12}",
    ]
}

fn directive() -> impl Strategy<Value = String> {
    prop::sample::select(KNOWN_DIRECTIVES).prop_map(str::to_owned)
}

/// A violated directive as browsers send it: the name, sometimes with its source list.
fn violated() -> impl Strategy<Value = String> {
    (
        directive(),
        prop::option::of(prop::sample::select(vec!["'none'", "'self' https:", "*"])),
    )
        .prop_map(|(name, sources)| match sources {
            Some(s) => format!("{name} {s}"),
            None => name,
        })
}

/// Free text, sometimes digits only (so digit strings can be swapped for numbers).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{1,24}",
        1 => "\\PC{1,12}",
        1 => "[1-9][0-9]{0,12}",
    ]
}

/// A float with at most 4 decimals (see the module docs).
fn short_float() -> impl Strategy<Value = f64> {
    (0u32..=10_000).prop_map(|n| f64::from(n) / 10_000.0)
}

/// An unknown field: never one of our aliases (`x-` prefix), any scalar or a small object.
fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    let value = prop_oneof![
        text().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        short_float().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        (text(), any::<u16>()).prop_map(|(a, b)| json!({"a": a, "b": [b, null]})),
    ];
    prop::collection::vec(("x-[a-z]{1,6}", value), 0..3)
}

/// Inserts `value` under `key` when present.
fn put<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

fn put_extras(map: &mut Map<String, Value>, extras: Vec<(String, Value)>) {
    for (key, value) in extras {
        map.insert(key, value);
    }
}

fn disposition() -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(prop::sample::select(vec!["enforce", "report", "reporting"]))
}

// ---------------------------------------------------------------------------------------------
// Generators of whole bodies, one per wire format.

/// The CSP fields of a legacy report (kebab-case) or a Reporting API body (camelCase).
fn csp_fields(camel: bool) -> BoxedStrategy<Map<String, Value>> {
    (
        (
            prop::option::of(url()),
            prop::option::of(url()),
            prop::option::of(blocked()),
            violated(),
            prop::option::of(directive()),
            prop::option::of(text()),
        ),
        (
            disposition(),
            prop::option::of(any::<u16>()),
            prop::option::of(url()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            prop::option::of(text()),
        ),
        extras(),
    )
        .prop_map(
            move |(
                (document, referrer, blocked, violated, effective, policy),
                (disposition, status, source, line, column, sample),
                extras,
            )| {
                let k = |kebab: &'static str, camel_key: &'static str| {
                    if camel {
                        camel_key
                    } else {
                        kebab
                    }
                };
                let mut m = Map::new();
                put(&mut m, k("document-uri", "documentURL"), document);
                put(&mut m, "referrer", referrer);
                put(&mut m, k("blocked-uri", "blockedURL"), blocked);
                if camel {
                    // The Reporting API always names the effective directive.
                    let name = effective.unwrap_or_else(|| {
                        violated.split(' ').next().unwrap_or("img-src").to_owned()
                    });
                    m.insert("effectiveDirective".into(), name.into());
                } else {
                    m.insert("violated-directive".into(), violated.into());
                    put(&mut m, "effective-directive", effective);
                }
                put(&mut m, k("original-policy", "originalPolicy"), policy);
                put(&mut m, "disposition", disposition);
                put(&mut m, k("status-code", "statusCode"), status);
                put(&mut m, k("source-file", "sourceFile"), source);
                put(&mut m, k("line-number", "lineNumber"), line);
                put(&mut m, k("column-number", "columnNumber"), column);
                put(&mut m, k("script-sample", "sample"), sample);
                put_extras(&mut m, extras);
                m
            },
        )
        .boxed()
}

fn legacy_csp() -> BoxedStrategy<Value> {
    (csp_fields(false), any::<bool>())
        .prop_map(|(fields, wrapped)| {
            if wrapped {
                json!({ "csp-report": fields })
            } else {
                Value::Object(fields)
            }
        })
        .boxed()
}

/// The Reporting API envelope around `body`.
fn envelope(
    report_type: impl Strategy<Value = String>,
    body: impl Strategy<Value = Value>,
) -> impl Strategy<Value = Value> {
    (
        report_type,
        prop::option::of(-1_000i64..100_000_000_000),
        prop::option::of(url()),
        prop::option::of(text()),
        body,
        extras(),
    )
        .prop_map(|(report_type, age, url, user_agent, body, extras)| {
            let mut m = Map::new();
            m.insert("type".into(), report_type.into());
            put(&mut m, "age", age);
            put(&mut m, "url", url);
            put(&mut m, "user_agent", user_agent);
            m.insert("body".into(), body);
            put_extras(&mut m, extras);
            Value::Object(m)
        })
}

fn reporting_csp() -> BoxedStrategy<Value> {
    envelope(
        Just("csp-violation".to_owned()),
        csp_fields(true).prop_map(Value::Object),
    )
    .boxed()
}

fn nel() -> BoxedStrategy<Value> {
    let body = (
        (
            prop::option::of(url()),
            prop::option::of(short_float()),
            prop::option::of("(192\\.0\\.2\\.[0-9]{1,3}|2001:db8::[0-9a-f]{1,4}|[1-9][0-9]{0,8})"),
            prop::option::of(prop::sample::select(vec!["http/1.1", "h2", "h3", "11"])),
        ),
        (
            prop::option::of(prop::sample::select(vec!["GET", "POST", "1"])),
            prop::option::of(any::<u16>()),
            prop::option::of(any::<u32>()),
            prop::option::of(prop::sample::select(vec![
                "dns",
                "connection",
                "application",
            ])),
            prop::option::of(prop::sample::select(vec![
                "ok",
                "dns.name_not_resolved",
                "tcp.timed_out",
                "http.error",
            ])),
        ),
        extras(),
    )
        .prop_map(
            |(
                (referrer, fraction, ip, protocol),
                (method, status, elapsed, phase, kind),
                extras,
            )| {
                let mut m = Map::new();
                put(&mut m, "referrer", referrer);
                put(&mut m, "sampling_fraction", fraction);
                put(&mut m, "server_ip", ip);
                put(&mut m, "protocol", protocol);
                put(&mut m, "method", method);
                put(&mut m, "status_code", status);
                put(&mut m, "elapsed_time", elapsed);
                put(&mut m, "phase", phase);
                put(&mut m, "type", kind);
                put_extras(&mut m, extras);
                Value::Object(m)
            },
        );
    envelope(Just("network-error".to_owned()), body).boxed()
}

/// deprecation, intervention, crash, coep, coop, permissions/document policy, integrity, test.
fn typed_body() -> BoxedStrategy<Value> {
    let report_type = prop::sample::select(vec![
        "deprecation",
        "intervention",
        "crash",
        "coep",
        "coop",
        "permissions-policy-violation",
        "potential-permissions-policy-violation",
        "document-policy-violation",
        "integrity-violation",
        "test",
    ])
    .prop_map(str::to_owned);
    let own_key = prop::sample::select(vec![
        "id",
        "message",
        "anticipatedRemoval",
        "featureId",
        "policyId",
        "reason",
        "destination",
        "effectivePolicy",
        "type",
        "stack",
    ]);
    let body = (
        prop::collection::vec((own_key, text()), 0..4),
        prop::option::of(url()),
        prop::option::of(url()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(blocked().prop_filter("a blocked URL of its own", |b| {
            !matches!(b.as_str(), "" | "self" | "'self'")
        })),
        disposition(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(own, document, source, line, column, blocked, disposition, report_only)| {
                let mut m = Map::new();
                for (key, value) in own {
                    m.insert(key.to_owned(), value.into());
                }
                put(&mut m, "documentURL", document);
                put(&mut m, "sourceFile", source);
                put(&mut m, "lineNumber", line);
                put(&mut m, "columnNumber", column);
                put(&mut m, "blockedURL", blocked);
                put(&mut m, "disposition", disposition);
                put(&mut m, "reportOnly", report_only);
                Value::Object(m)
            },
        );
    envelope(report_type, body).boxed()
}

fn unknown_type() -> BoxedStrategy<Value> {
    let body = prop_oneof![
        (text(), any::<u32>()).prop_map(|(a, b)| json!({"k": a, "n": b})),
        (text(), any::<i32>()).prop_map(|(a, b)| json!([a, b, null])),
        text().prop_map(Value::from),
    ];
    envelope("future-[a-z]{1,8}", body).boxed()
}

fn certificate() -> BoxedStrategy<Value> {
    (
        (
            "[a-z]{1,10}\\.(example|test)",
            prop::option::of(any::<u16>()),
            prop::option::of("20[0-9]{2}-[01][0-9]-[0-3][0-9]T00:00:00Z"),
            prop::option::of(any::<bool>()),
            prop::option::of(text()),
        ),
        (
            prop::collection::vec("[A-Za-z0-9+/]{4,16}", 0..3),
            prop::collection::vec("pin-sha256=\"[A-Za-z0-9+/]{4,12}=\"", 0..3),
            prop::collection::vec(
                (any::<u8>(), "[a-z]{1,8}").prop_map(|(v, s)| json!({"version": v, "status": s})),
                0..2,
            ),
            prop::option::of(prop::sample::select(vec!["ERROR_RESPONSE", "UNKNOWN"])),
        ),
        extras(),
        0u8..3,
    )
        .prop_map(
            |(
                (hostname, port, date, subdomains, noted),
                (chain, pins, scts, status),
                extras,
                shape,
            )| {
                let mut m = Map::new();
                m.insert("hostname".into(), hostname.into());
                put(&mut m, "port", port);
                put(&mut m, "date-time", date);
                put(&mut m, "include-subdomains", subdomains);
                put(&mut m, "noted-hostname", noted);
                if !chain.is_empty() {
                    m.insert("served-certificate-chain".into(), chain.into());
                }
                put_extras(&mut m, extras);
                match shape {
                    0 => {
                        m.insert("known-pins".into(), pins.into());
                        Value::Object(m)
                    }
                    1 => {
                        if !scts.is_empty() {
                            m.insert("scts".into(), scts.into());
                        }
                        json!({ "expect-ct-report": m })
                    }
                    _ => {
                        put(&mut m, "response-status", status);
                        json!({ "expect-staple-report": m })
                    }
                }
            },
        )
        .boxed()
}

fn xss() -> BoxedStrategy<Value> {
    (prop::option::of(url()), prop::option::of(text()))
        .prop_map(|(url, body)| {
            let mut m = Map::new();
            put(&mut m, "request-url", url);
            put(&mut m, "request-body", body);
            json!({ "xss-report": m })
        })
        .boxed()
}

/// A valid single-report body of any kind.
fn any_body() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => legacy_csp(),
        3 => reporting_csp(),
        2 => nel(),
        2 => typed_body(),
        1 => unknown_type(),
        2 => certificate(),
        1 => xss(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Transformations of a body that must not change the result.

/// A small deterministic shuffler (the seed comes from proptest, so failures replay).
struct Shuffler(u64);

impl Shuffler {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The same JSON with every object's keys in a shuffled order.
fn shuffle(value: &Value, rng: &mut Shuffler) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            for i in (1..entries.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                entries.swap(i, j);
            }
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), shuffle(v, rng)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| shuffle(v, rng)).collect()),
        other => other.clone(),
    }
}

/// Other spellings the parser accepts for a key, to send the same field twice.
const ALIASES: &[(&str, &[&str])] = &[
    (
        "document-uri",
        &["documentURL", "document_uri", "documentURI", "DOCUMENT-URI"],
    ),
    (
        "documentURL",
        &["document-uri", "document_url", "documenturl"],
    ),
    ("blocked-uri", &["blockedURL", "blocked_uri", "blockedURI"]),
    ("blockedURL", &["blocked-uri", "blocked_url"]),
    ("line-number", &["lineno", "lineNumber", "line_number"]),
    ("lineNumber", &["lineno", "line-number"]),
    ("column-number", &["colno", "columnNumber"]),
    ("script-sample", &["sample", "scriptSample"]),
    ("sample", &["script-sample", "SAMPLE"]),
    ("status_code", &["statusCode", "status-code"]),
    (
        "violated-directive",
        &["violatedDirective", "violated_directive"],
    ),
    ("hostname", &["HostName", "host_name"]),
    ("user_agent", &["userAgent", "user-agent"]),
];

/// The body with some fields sent a second time under another spelling, with another value.
fn with_alias_duplicates(value: &Value, rng: &mut Shuffler) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), with_alias_duplicates(v, rng));
                let Some((_, spellings)) = ALIASES.iter().find(|(key, _)| key == k) else {
                    continue;
                };
                if rng.next().is_multiple_of(2) {
                    continue;
                }
                let spelling = spellings[(rng.next() % spellings.len() as u64) as usize];
                let other = match v {
                    Value::Number(_) => Value::from(4242),
                    _ if k.contains("directive") => Value::from("frame-src"),
                    _ => Value::from("https://alias.example/other"),
                };
                out.entry(spelling.to_owned()).or_insert(other);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| with_alias_duplicates(v, rng))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Keys whose numeric (or boolean) value the parser also accepts as a string.
const NUMERIC_KEYS: &[&str] = &[
    "line-number",
    "column-number",
    "status-code",
    "lineNumber",
    "columnNumber",
    "statusCode",
    "age",
    "status_code",
    "elapsed_time",
    "sampling_fraction",
    "port",
    "include-subdomains",
];

/// Keys of lenient string fields: a number there is read as its JSON text.
const LENIENT_STRING_KEYS: &[&str] = &[
    "script-sample",
    "sample",
    "original-policy",
    "originalPolicy",
    "user_agent",
    "server_ip",
    "protocol",
    "method",
    "noted-hostname",
];

/// Applies `swap` to the value of every key in `keys`, at any depth except inside unknown
/// fields (`x-...`), which are kept verbatim.
fn swap_values(value: &Value, keys: &[&str], swap: &impl Fn(&Value) -> Option<Value>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if k.starts_with("x-") {
                        v.clone()
                    } else if keys.contains(&k.as_str()) {
                        swap(v).unwrap_or_else(|| v.clone())
                    } else {
                        swap_values(v, keys, swap)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| swap_values(v, keys, swap)).collect())
        }
        other => other.clone(),
    }
}

fn numbers_as_strings(value: &Value) -> Value {
    swap_values(value, NUMERIC_KEYS, &|v| match v {
        Value::Number(n) => Some(Value::String(n.to_string())),
        Value::Bool(b) => Some(Value::String(b.to_string())),
        _ => None,
    })
}

fn digit_strings_as_numbers(value: &Value) -> Value {
    swap_values(value, LENIENT_STRING_KEYS, &|v| {
        let s = v.as_str()?;
        let canonical = !s.is_empty()
            && s.len() <= 18
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return None;
        }
        s.parse::<u64>().ok().map(Value::from)
    })
}

// ---------------------------------------------------------------------------------------------
// Back to the wire: the normalised report in its own wire format.

fn set<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    put(map, key, value);
}

/// The stored blocked URL as a wire value (`None`: leave the key out).
fn blocked_wire(report: &Report, absent: BlockedClass) -> Option<String> {
    match (report.blocked_class, &report.blocked_url) {
        (_, Some(url)) => Some(url.clone()),
        (class, None) if class == absent => None,
        (BlockedClass::SelfOrigin, None) => Some("self".into()),
        (BlockedClass::None, None) => Some("null".into()),
        (class, None) => panic!("class {class:?} without a URL"),
    }
}

/// The CSP and common fields of `report` under the canonical keys of `wire`.
fn common_wire(report: &Report, m: &mut Map<String, Value>, legacy: bool) {
    let k = |kebab: &'static str, camel: &'static str| if legacy { kebab } else { camel };
    set(
        m,
        k("document-uri", "documentURL"),
        report.document_url.clone(),
    );
    set(m, "referrer", report.referrer.clone());
    set(
        m,
        k("source-file", "sourceFile"),
        report.source_file.clone(),
    );
    set(m, k("line-number", "lineNumber"), report.line_number);
    set(m, k("column-number", "columnNumber"), report.column_number);
    set(m, k("script-sample", "sample"), report.sample.clone());
    set(m, "disposition", report.disposition.map(|d| d.as_str()));
    set(m, k("status-code", "statusCode"), report.status_code);
    set(
        m,
        k("original-policy", "originalPolicy"),
        report.original_policy.clone(),
    );
}

fn csp_wire(report: &Report, legacy: bool) -> Map<String, Value> {
    let mut m = Map::new();
    common_wire(report, &mut m, legacy);
    let (blocked, violated, effective) = if legacy {
        ("blocked-uri", "violated-directive", "effective-directive")
    } else {
        ("blockedURL", "violatedDirective", "effectiveDirective")
    };
    set(
        &mut m,
        blocked,
        blocked_wire(report, BlockedClass::SelfOrigin),
    );
    set(&mut m, violated, report.violated_directive.clone());
    set(&mut m, effective, report.effective_directive.clone());
    m
}

/// Writes a normalised report back in the wire format it came in; `extra` goes where the
/// parser collects it from (the object it was found in or the envelope).
fn to_wire(report: &Report) -> Value {
    let with_extra = |mut m: Map<String, Value>| {
        for (k, v) in report.extra.to_map() {
            m.insert(k, v);
        }
        m
    };
    match report.wire {
        WireFormat::LegacyCsp => json!({ "csp-report": with_extra(csp_wire(report, true)) }),
        WireFormat::LegacyCspUnwrapped => Value::Object(with_extra(csp_wire(report, true))),
        WireFormat::ReportingSingle | WireFormat::ReportingBatch => {
            let body = match &report.details {
                Details::Unknown(body) => body.clone(),
                Details::NetworkError(nel) => {
                    let mut m = Map::new();
                    set(&mut m, "referrer", report.referrer.clone());
                    set(&mut m, "status_code", report.status_code);
                    set(&mut m, "phase", nel.phase.clone());
                    set(&mut m, "type", nel.error_type.clone());
                    set(&mut m, "server_ip", nel.server_ip.clone());
                    set(&mut m, "elapsed_time", nel.elapsed_time_ms);
                    set(&mut m, "method", nel.method.clone());
                    set(&mut m, "protocol", nel.protocol.clone());
                    set(&mut m, "sampling_fraction", nel.sampling_fraction);
                    Value::Object(m)
                }
                Details::Fields(fields) => {
                    let mut m = fields.clone();
                    common_wire(report, &mut m, false);
                    // The envelope `url` carries the document (below).
                    m.remove("documentURL");
                    set(
                        &mut m,
                        "blockedURL",
                        blocked_wire(report, BlockedClass::None),
                    );
                    Value::Object(m)
                }
                Details::None | Details::Certificate(_) => {
                    let mut m = csp_wire(report, false);
                    m.remove("documentURL");
                    Value::Object(m)
                }
            };
            let mut envelope = Map::new();
            set(&mut envelope, "type", report.report_type.clone());
            set(&mut envelope, "age", report.age_ms);
            set(&mut envelope, "url", report.document_url.clone());
            set(&mut envelope, "user_agent", report.user_agent.clone());
            envelope.insert("body".into(), body);
            let envelope = Value::Object(with_extra(envelope));
            if report.wire == WireFormat::ReportingBatch {
                json!([envelope])
            } else {
                envelope
            }
        }
        WireFormat::ExpectCt | WireFormat::ExpectStaple | WireFormat::Hpkp => {
            let Details::Certificate(c) = &report.details else {
                panic!("certificate wire without certificate details: {report:?}");
            };
            let mut m = Map::new();
            m.insert("hostname".into(), c.hostname.clone().into());
            set(&mut m, "port", c.port);
            set(&mut m, "date-time", c.date_time.clone());
            set(
                &mut m,
                "effective-expiration-date",
                c.effective_expiration_date.clone(),
            );
            set(&mut m, "include-subdomains", c.include_subdomains);
            set(&mut m, "noted-hostname", c.noted_hostname.clone());
            let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
            set(
                &mut m,
                "served-certificate-chain",
                list(&c.served_certificate_chain),
            );
            set(
                &mut m,
                "validated-certificate-chain",
                list(&c.validated_certificate_chain),
            );
            set(&mut m, "scts", (!c.scts.is_empty()).then(|| c.scts.clone()));
            set(&mut m, "response-status", c.response_status.clone());
            set(&mut m, "cert-status", c.cert_status.clone());
            match report.wire {
                WireFormat::Hpkp => {
                    // `known-pins` is what makes the body HPKP, even when empty.
                    m.insert("known-pins".into(), c.known_pins.clone().into());
                    Value::Object(with_extra(m))
                }
                WireFormat::ExpectCt => {
                    set(&mut m, "known-pins", list(&c.known_pins));
                    json!({ "expect-ct-report": with_extra(m) })
                }
                _ => {
                    set(&mut m, "known-pins", list(&c.known_pins));
                    json!({ "expect-staple-report": with_extra(m) })
                }
            }
        }
        WireFormat::XssAuditor => {
            let mut m = Map::new();
            set(&mut m, "request-url", report.document_url.clone());
            json!({ "xss-report": with_extra(m) })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn parse_bytes(body: &mut [u8]) -> Result<Parsed, ParseError> {
    Parser::new(ParseLimits::default()).parse(body)
}

fn parse_value(body: &Value) -> Result<Parsed, ParseError> {
    parse_bytes(&mut serde_json::to_vec(body).expect("json values serialise"))
}

/// The single report of a generated body (generated bodies are valid by construction).
fn report_of(body: &Value) -> Report {
    let mut parsed = parse_value(body).unwrap_or_else(|e| panic!("refused {body}: {e:?}"));
    assert_eq!(parsed.items.len(), 1, "{body}");
    parsed
        .items
        .remove(0)
        .unwrap_or_else(|e| panic!("item refused {body}: {e:?}"))
}

/// A comparable outcome: the items, or the refusal reason.
fn outcome(
    result: Result<Parsed, ParseError>,
) -> Result<Vec<Result<Report, schemas::ReportError>>, &'static str> {
    result.map(|p| p.items).map_err(|e| e.reason())
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// 512 cases per property (about 2 s for the file in a debug build); `PROPTEST_CASES=N` for a
/// longer run.
fn config() -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig {
            cases: 512,
            ..ProptestConfig::default()
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn never_panics_on_mutated_valid_bodies(
        body in any_body(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = serde_json::to_vec(&body).expect("json values serialise");
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Ok(parsed) = parse_bytes(&mut bytes) {
            for report in parsed.items.into_iter().flatten() {
                let _ = schemas::noise::classify(&report);
                let message = message(report);
                let _ = ReportMessage::decode(&message.encode()).expect("own messages decode");
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent(body in any_body()) {
        let report = report_of(&body);
        let wire = to_wire(&report);
        let again = report_of(&wire);
        prop_assert_eq!(&again, &report, "body {} rewired {}", body, wire);

        let message = message(report);
        // The hand-written JSON layout is byte for byte what serde_json writes.
        let serde = serde_json::to_vec(&message).expect("serialises");
        prop_assert_eq!(message.encode(), serde);
        let decoded = ReportMessage::decode(&message.encode()).expect("own messages decode");
        prop_assert_eq!(&decoded, &message);
        // The binary layout carries exactly the same message, and its JSON form is the JSON.
        let binary = schemas::binary::encode(&message);
        let from_binary = ReportMessage::decode(&binary).expect("own binary messages decode");
        prop_assert_eq!(&from_binary, &message);
        prop_assert_eq!(from_binary.encode(), message.encode());
        prop_assert_eq!(
            schemas::fingerprint(7, &decoded.report),
            schemas::fingerprint(7, &message.report)
        );
    }

    #[test]
    fn binary_messages_never_panic_when_damaged(
        body in any_body(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let message = message(report_of(&body));
        let bytes = schemas::binary::encode(&message);
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] = value;
        if let Ok(decoded) = ReportMessage::decode(&changed) {
            // Whatever decodes is a whole message that encodes again.
            let _ = ReportMessage::decode(&decoded.encode()).expect("re-encoded message decodes");
        }
        let end = cut.index(bytes.len());
        prop_assert!(ReportMessage::decode(&bytes[..end]).is_err(), "cut at {}", end);
    }

    #[test]
    fn key_order_does_not_matter(body in any_body(), seed in any::<u64>()) {
        let mut rng = Shuffler(seed | 1);
        let shuffled = shuffle(&body, &mut rng);
        prop_assert_eq!(
            outcome(parse_value(&shuffled)),
            outcome(parse_value(&body)),
            "{} vs {}", shuffled, body
        );
        // Where order could matter: the same field under two spellings.
        let doubled = with_alias_duplicates(&body, &mut rng);
        let shuffled = shuffle(&doubled, &mut rng);
        prop_assert_eq!(
            outcome(parse_value(&shuffled)),
            outcome(parse_value(&doubled)),
            "{} vs {}", shuffled, doubled
        );
    }

    #[test]
    fn numbers_as_strings_do_not_matter(
        body in any_body().prop_filter("unknown bodies are verbatim", |b| {
            !b["type"].as_str().is_some_and(|t| t.starts_with("future-"))
        }),
    ) {
        let expected = outcome(parse_value(&body));
        prop_assert!(expected.is_ok(), "{}", body);
        let stringly = numbers_as_strings(&body);
        prop_assert_eq!(outcome(parse_value(&stringly)), expected.clone(), "{}", stringly);
        let numeric = digit_strings_as_numbers(&body);
        prop_assert_eq!(outcome(parse_value(&numeric)), expected, "{}", numeric);
    }

    #[test]
    fn array_wrapping_is_reporting_only(body in any_body()) {
        let single = report_of(&body);
        let wrapped = parse_value(&json!([body.clone()]));
        match single.wire {
            WireFormat::ReportingSingle => {
                let mut batch = report_of(&json!([body]));
                prop_assert_eq!(batch.wire, WireFormat::ReportingBatch);
                batch.wire = WireFormat::ReportingSingle;
                prop_assert_eq!(batch, single);
            }
            _ => {
                let refused = wrapped.map(|p| p.items).map_err(|e| e.to_string());
                prop_assert_eq!(
                    refused,
                    Err("no valid report in the body".to_owned()),
                    "{}", body
                );
                let reason = parse_value(&json!([body])).err().map(|e| e.reason());
                prop_assert_eq!(reason, Some("missing_field"));
            }
        }
    }
}

/// The generators reach every kind and every wire format (else a property is vacuous there).
#[test]
fn generators_cover_every_kind_and_wire() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = any_body();
    let mut kinds = std::collections::BTreeSet::new();
    let mut wires = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let body = strategy
            .new_tree(&mut runner)
            .expect("generators do not reject")
            .current();
        let report = report_of(&body);
        kinds.insert(report.kind.as_str());
        wires.insert(format!("{:?}", report.wire));
    }
    for kind in ReportKind::ALL {
        assert!(
            kinds.contains(kind.as_str()),
            "{} never generated: {kinds:?}",
            kind.as_str()
        );
    }
    // Batches come from `array_wrapping_is_reporting_only`; every other format is generated.
    assert_eq!(wires.len(), 7, "{wires:?}");
}
