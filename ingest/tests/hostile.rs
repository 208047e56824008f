//! Hostile request bodies and requests against a real ingest publishing to a real broker (tansu):
//! one table of nasty inputs (truncated JSON, invalid UTF-8, deep nesting, huge strings and
//! numbers, duplicate keys, NUL bytes, compression bombs, oversized batches, odd content types,
//! request smuggling and malformed HTTP/1 framing), each sent over a raw TCP connection so the
//! bytes on the wire are exactly the ones in the table.
//!
//! Each case has its documented answer (README "Answers" and RELIABILITY "Hostile requests"):
//! the status, the JSON `error` label and its `ingest_rejections_total{reason}` counter, or the
//! hyper-level refusal counted in `ingest_connection_errors_total{reason="protocol"}`. After
//! every case `/healthz` and `/readyz` answer 200 and a normal report is still accepted; at the
//! end the topic holds exactly the probes plus the reports of the cases that accept, and nothing
//! of the refused ones.
//!
//! Skipped when tansu is missing (panics with `CI=true`); see `testbed::kafka`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use support::{client, csp, reporting_item, Server, PROJECTS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/api/1/security/?sentry_key=k1";
const TOPIC: &str = "ingest-hostile";
/// The ingest limits the table is written against (the defaults, spelled out).
const MAX_BODY: usize = 1_048_576;
const MAX_DECOMPRESSED: usize = 4_194_304;
const MAX_BATCH: usize = 100;

/// What a case must get back.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// 202: `accepted` reports published, with these document URLs.
    Accepted { documents: Vec<String> },
    /// A refusal by ingest: status and the `error` label (also the metric label).
    Refused { status: u16, label: &'static str },
    /// A refusal by hyper before any handler ran: status, then the connection is closed.
    Protocol { status: u16 },
}

/// An extra check on an exchange; `Err` says what is wrong.
type Check = fn(&Exchange) -> Result<(), String>;

/// One row of the table.
struct Case {
    name: &'static str,
    /// The raw bytes written to a fresh connection.
    request: Vec<u8>,
    expect: Expect,
    /// Extra checks on the whole exchange (e.g. "the smuggled request was not answered").
    check: Option<Check>,
}

/// What came back on the connection.
#[derive(Debug)]
struct Exchange {
    responses: Vec<Response>,
    /// The server closed the connection (EOF or reset) within the read timeout.
    closed: bool,
}

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A `POST` to project 1 with `Connection: close`, exact `Content-Length` and `headers`.
fn post(headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A JSON `POST` as browsers send legacy CSP reports.
fn json(body: &[u8]) -> Vec<u8> {
    post(&[("content-type", "application/csp-report")], body)
}

/// A legacy CSP report of `document` whose `extra` fields are spliced in as raw JSON text.
fn csp_with(document: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"csp-report":{{"document-uri":"{document}","blocked-uri":"https://evil.example/x.js","effective-directive":"script-src-elem"{extra}}}}}"#
    )
    .into_bytes()
}

fn doc(name: &str) -> String {
    format!("https://shop.example/case/{name}")
}

fn accepted(names: &[&str]) -> Expect {
    Expect::Accepted {
        documents: names.iter().map(|n| doc(n)).collect(),
    }
}

fn refused(status: u16, label: &'static str) -> Expect {
    Expect::Refused { status, label }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A valid report that decompresses past the limit: the bomb is a real report padded with
/// whitespace, so only the size cap can refuse it.
fn bomb_payload() -> Vec<u8> {
    let mut body = csp_with(&doc("bomb"), "");
    body.resize(MAX_DECOMPRESSED * 4, b' ');
    body
}

fn cases() -> Vec<Case> {
    let deep_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_objects = format!("{}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let huge_string = "A".repeat(900 * 1024);
    let batch_over: Vec<_> = (0..=MAX_BATCH)
        .map(|i| {
            reporting_item(
                "https://shop.example/batch",
                &format!("https://c{i}.example/"),
            )
        })
        .collect();
    let batch_over = serde_json::Value::Array(batch_over).to_string();
    let batch_max: Vec<_> = (0..MAX_BATCH)
        .map(|i| reporting_item(&doc("batch-max"), &format!("https://c{i}.example/")))
        .collect();
    let batch_max = serde_json::Value::Array(batch_max).to_string();
    let bomb = bomb_payload();
    let gzip_bomb = gzip(&bomb);
    let deflate_bomb = zlib(&bomb);
    let mut bad_gzip = gzip(&csp_with(&doc("bad-gzip"), ""));
    let half = bad_gzip.len() / 2;
    bad_gzip.truncate(half);
    let smuggled = format!(
        "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\ncontent-type: application/csp-report\r\n\
         content-length: {len}\r\n\r\n{body}",
        len = csp(&doc("smuggled"), "https://evil.example/x.js").len(),
        body = csp(&doc("smuggled"), "https://evil.example/x.js"),
    );
    let cl_te_body = format!("0\r\n\r\n{smuggled}");
    let huge_uri = format!("{PATH}&pad={}", "x".repeat(70_000));

    let mut invalid_value = csp_with(&doc("bad-utf8-value"), r#","script-sample":"caf_""#);
    let at = invalid_value.len() - 4;
    invalid_value[at] = 0xE9; // latin-1 é: not UTF-8
    let mut invalid_key = csp_with(&doc("bad-utf8-key"), r#","k_y":"v""#);
    let at = invalid_key.len() - 9;
    invalid_key[at] = 0xFF;
    let mut raw_nul = csp_with(&doc("raw-nul"), r#","script-sample":"a_b""#);
    let at = raw_nul.len() - 5;
    raw_nul[at] = 0;
    let mut latin1_body = csp_with(&doc("latin1"), r#","script-sample":"caf_""#);
    let at = latin1_body.len() - 4;
    latin1_body[at] = 0xE9;

    vec![
        Case {
            name: "truncated json",
            request: json(&csp_with(&doc("truncated"), "")[..60]),
            expect: refused(400, "invalid_json"),
            check: None,
        },
        Case {
            name: "invalid utf-8 in a string value",
            request: json(&invalid_value),
            expect: refused(400, "invalid_utf8"),
            check: None,
        },
        Case {
            name: "invalid utf-8 in a key",
            request: json(&invalid_key),
            expect: refused(400, "invalid_utf8"),
            check: None,
        },
        Case {
            name: "10,000 nested arrays",
            request: json(deep_arrays.as_bytes()),
            expect: refused(400, "too_deep"),
            check: None,
        },
        Case {
            name: "10,000 nested objects",
            request: json(deep_objects.as_bytes()),
            expect: refused(400, "too_deep"),
            check: None,
        },
        Case {
            name: "900 KiB string",
            request: json(&csp_with(
                &doc("huge-string"),
                &format!(r#","script-sample":"{huge_string}""#),
            )),
            expect: accepted(&["huge-string"]),
            check: None,
        },
        Case {
            // Within --max-body-bytes, but its Kafka message is over the producer's
            // `message.max.bytes` (1,000,000): a permanent refusal, not a 503 to retry.
            name: "string filling --max-body-bytes",
            request: json(&csp_with(
                &doc("body-sized-string"),
                &format!(r#","script-sample":"{}""#, "A".repeat(MAX_BODY - 200)),
            )),
            expect: refused(413, "message_too_large"),
            check: None,
        },
        Case {
            name: "number 1e400",
            request: json(&csp_with(&doc("1e400"), r#","status-code":1e400"#)),
            expect: refused(400, "invalid_json"),
            check: None,
        },
        Case {
            name: "number 2^64+1",
            request: json(&csp_with(&doc("2^64+1"), r#","line-number":18446744073709551617"#)),
            expect: refused(400, "invalid_json"),
            check: None,
        },
        Case {
            name: "number -0",
            request: json(&csp_with(&doc("minus-zero"), r#","line-number":-0"#)),
            expect: accepted(&["minus-zero"]),
            check: None,
        },
        Case {
            name: "NaN-like strings in numeric fields",
            request: json(&csp_with(
                &doc("nan"),
                r#","status-code":"NaN","line-number":"Infinity","column-number":"-1e400""#,
            )),
            expect: accepted(&["nan"]),
            check: None,
        },
        Case {
            // The last occurrence wins (as in `JSON.parse`) and the earlier one is dropped,
            // whatever the object's size.
            name: "duplicate keys",
            request: json(
                br#"{"csp-report":{"document-uri":"https://shop.example/case/dup-first","blocked-uri":"https://evil.example/x.js","effective-directive":"script-src-elem","document-uri":"https://shop.example/case/dup-second"}}"#,
            ),
            expect: accepted(&["dup-second"]),
            check: None,
        },
        Case {
            // Objects of more than 32 keys are hash maps in simd-json: the same rule, last wins.
            name: "duplicate keys in an object of more than 32 keys",
            request: json(
                format!(
                    r#"{{"csp-report":{{"document-uri":"https://shop.example/case/dup-big-first","blocked-uri":"https://evil.example/x.js","effective-directive":"script-src-elem"{filler},"document-uri":"https://shop.example/case/dup-big-second"}}}}"#,
                    filler = (0..32).map(|i| format!(r#","x{i}":{i}"#)).collect::<String>()
                )
                .as_bytes(),
            ),
            expect: accepted(&["dup-big-second"]),
            check: None,
        },
        Case {
            name: "escaped NUL in a string",
            request: json(&csp_with(&doc("escaped-nul"), r#","script-sample":"a\u0000b""#)),
            expect: accepted(&["escaped-nul"]),
            check: None,
        },
        Case {
            name: "raw NUL byte in a string",
            request: json(&raw_nul),
            expect: refused(400, "invalid_json"),
            check: None,
        },
        Case {
            name: "gzip bomb",
            request: post(&[("content-encoding", "gzip")], &gzip_bomb),
            expect: refused(413, "decompressed_too_large"),
            check: None,
        },
        Case {
            name: "deflate bomb",
            request: post(&[("content-encoding", "deflate")], &deflate_bomb),
            expect: refused(413, "decompressed_too_large"),
            check: None,
        },
        Case {
            name: "truncated gzip stream",
            request: post(&[("content-encoding", "gzip")], &bad_gzip),
            expect: refused(400, "bad_compression"),
            check: None,
        },
        Case {
            name: "unsupported content-encoding",
            request: post(&[("content-encoding", "br")], &csp_with(&doc("br"), "")),
            expect: refused(415, "unsupported_encoding"),
            check: None,
        },
        Case {
            // Only one layer is ever decoded: a bomb inside a bomb is refused up front.
            name: "stacked content-encodings (gzip, gzip)",
            request: post(&[("content-encoding", "gzip, gzip")], &gzip(&gzip_bomb)),
            expect: refused(415, "unsupported_encoding"),
            check: None,
        },
        Case {
            name: "content-encoding: gzip twice",
            request: post(
                &[("content-encoding", "gzip"), ("content-encoding", "gzip")],
                &gzip(&gzip_bomb),
            ),
            expect: refused(415, "unsupported_encoding"),
            check: None,
        },
        Case {
            name: "batch of exactly --max-batch-len",
            request: post(
                &[("content-type", "application/reports+json")],
                batch_max.as_bytes(),
            ),
            expect: Expect::Accepted {
                documents: vec![doc("batch-max"); MAX_BATCH],
            },
            check: None,
        },
        Case {
            name: "batch over --max-batch-len",
            request: post(
                &[("content-type", "application/reports+json")],
                batch_over.as_bytes(),
            ),
            expect: refused(413, "batch_too_long"),
            check: None,
        },
        Case {
            name: "empty body",
            request: json(b""),
            expect: refused(400, "empty_body"),
            check: None,
        },
        Case {
            name: "whitespace body",
            request: json(b" \r\n\t "),
            expect: refused(400, "empty_body"),
            check: None,
        },
        Case {
            name: "content-type text/html",
            request: post(&[("content-type", "text/html")], &csp_with(&doc("html"), "")),
            expect: accepted(&["html"]),
            check: None,
        },
        Case {
            name: "no content-type",
            request: post(&[], &csp_with(&doc("no-type"), "")),
            expect: accepted(&["no-type"]),
            check: None,
        },
        Case {
            name: "charset=latin1, ASCII body",
            request: post(
                &[("content-type", "application/json; charset=latin1")],
                &csp_with(&doc("latin1-ascii"), ""),
            ),
            expect: accepted(&["latin1-ascii"]),
            check: None,
        },
        Case {
            name: "charset=latin1, latin-1 bytes",
            request: post(
                &[("content-type", "application/json; charset=latin1")],
                &latin1_body,
            ),
            expect: refused(400, "invalid_utf8"),
            check: None,
        },
        Case {
            name: "body over --max-body-bytes",
            request: json(&vec![b' '; MAX_BODY + 1]),
            expect: refused(413, "body_too_large"),
            check: None,
        },
        Case {
            // RFC 9112 6.1: Transfer-Encoding overrides Content-Length, and the server must
            // close the connection after answering. hyper drops the Content-Length, reads the
            // chunked body (empty here) and closes: the request smuggled after the last chunk
            // is never parsed, let alone published.
            name: "content-length with transfer-encoding (CL.TE smuggling)",
            request: format!(
                "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\ncontent-type: application/csp-report\r\n\
                 content-length: {}\r\ntransfer-encoding: chunked\r\n\r\n{cl_te_body}",
                cl_te_body.len()
            )
            .into_bytes(),
            expect: refused(400, "empty_body"),
            check: Some(one_answer_then_closed),
        },
        Case {
            // The other order: a short Content-Length, the report in a chunk, then a smuggled
            // request. The chunked body is the request's body; the rest is discarded.
            name: "transfer-encoding with a short content-length (TE.CL smuggling)",
            request: {
                let report = csp_with(&doc("te-cl"), "");
                let mut r = format!(
                    "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\ncontent-length: 4\r\n\
                     transfer-encoding: chunked\r\n\r\n{:x}\r\n",
                    report.len()
                )
                .into_bytes();
                r.extend_from_slice(&report);
                r.extend_from_slice(b"\r\n0\r\n\r\n");
                r.extend_from_slice(smuggled.as_bytes());
                r
            },
            expect: accepted(&["te-cl"]),
            check: Some(one_answer_then_closed),
        },
        Case {
            name: "transfer-encoding that is not chunked",
            request: format!(
                "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\ntransfer-encoding: xchunked\r\n\r\n{{}}"
            )
            .into_bytes(),
            expect: Expect::Protocol { status: 400 },
            check: None,
        },
        Case {
            name: "HTTP/1.0 with transfer-encoding",
            request: format!(
                "POST {PATH} HTTP/1.0\r\nhost: ingest.test\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            )
            .into_bytes(),
            expect: Expect::Protocol { status: 400 },
            check: None,
        },
        Case {
            name: "two different content-lengths",
            request: format!(
                "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\ncontent-length: 3\r\ncontent-length: 300\r\n\r\n{{}}"
            )
            .into_bytes(),
            expect: Expect::Protocol { status: 400 },
            check: None,
        },
        Case {
            name: "obs-fold header",
            request: format!(
                "POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\nx-folded: a\r\n  b\r\ncontent-length: 2\r\n\r\n{{}}"
            )
            .into_bytes(),
            expect: Expect::Protocol { status: 400 },
            check: None,
        },
        Case {
            name: "absolute-form request line",
            request: {
                let body = csp_with(&doc("absolute-form"), "");
                let mut r = format!(
                    "POST http://ingest.test{PATH} HTTP/1.1\r\nhost: ingest.test\r\nconnection: close\r\n\
                     content-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            },
            expect: accepted(&["absolute-form"]),
            check: None,
        },
        Case {
            name: "70 KB request target",
            request: format!(
                "POST {huge_uri} HTTP/1.1\r\nhost: ingest.test\r\ncontent-length: 2\r\n\r\n{{}}"
            )
            .into_bytes(),
            expect: Expect::Protocol { status: 414 },
            check: None,
        },
        Case {
            name: "more than 100 header fields",
            request: {
                let headers: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
                format!("POST {PATH} HTTP/1.1\r\nhost: ingest.test\r\n{headers}content-length: 2\r\n\r\n{{}}")
                    .into_bytes()
            },
            expect: Expect::Protocol { status: 431 },
            check: None,
        },
        Case {
            name: "HTTP/1.0 without keep-alive",
            request: {
                let body = csp_with(&doc("http10"), "");
                let mut r = format!(
                    "POST {PATH} HTTP/1.0\r\nhost: ingest.test\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            },
            expect: accepted(&["http10"]),
            check: Some(|exchange| {
                if exchange.closed {
                    Ok(())
                } else {
                    Err("an HTTP/1.0 connection without keep-alive must be closed".to_owned())
                }
            }),
        },
    ]
}

/// Exactly one response, and the server closed the connection after it.
fn one_answer_then_closed(exchange: &Exchange) -> Result<(), String> {
    if exchange.responses.len() == 1 && exchange.closed {
        Ok(())
    } else {
        Err(format!(
            "{} responses, closed: {} (a smuggled request must get no answer of its own)",
            exchange.responses.len(),
            exchange.closed
        ))
    }
}

/// Writes `request` on a fresh connection and reads every response until the server closes
/// the connection or `timeout` passes.
async fn exchange(server: &Server, request: &[u8], timeout: Duration) -> Exchange {
    let mut stream = tokio::net::TcpStream::connect(server.public_addr)
        .await
        .unwrap();
    // The server may answer and close before reading everything (a 413 on Content-Length):
    // a write error then is part of the exchange, not a failure.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    let closed = loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_elapsed) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    };
    Exchange {
        responses: parse_responses(&received),
        closed,
    }
}

/// Splits HTTP/1 responses with `Content-Length` bodies (all ingest and hyper answers have one).
fn parse_responses(mut bytes: &[u8]) -> Vec<Response> {
    let mut responses = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let body_end = (end + 4 + length).min(bytes.len());
        responses.push(Response {
            status,
            head,
            body: bytes[end + 4..body_end].to_vec(),
        });
        bytes = &bytes[body_end..];
    }
    responses
}

/// Refusal counters of `/metrics`, by series.
async fn counters(server: &Server, label: Option<&str>) -> (f64, f64) {
    let rejected = match label {
        Some(label) => {
            server
                .metric(&format!("ingest_rejections_total{{reason=\"{label}\"}}"))
                .await
        }
        None => 0.0,
    };
    let protocol = server
        .metric("ingest_connection_errors_total{reason=\"protocol\"}")
        .await;
    (rejected, protocol)
}

/// Checks one case's exchange against its expectation; `Err` says what differed.
fn judge(case: &Case, exchange: &Exchange) -> Result<(), String> {
    let first = exchange
        .responses
        .first()
        .ok_or_else(|| format!("no response (closed: {})", exchange.closed))?;
    match &case.expect {
        Expect::Accepted { documents } => {
            let answer = first.json();
            if first.status != 202 || answer["accepted"] != documents.len() {
                return Err(format!("got {} {answer}", first.status));
            }
        }
        Expect::Refused { status, label } => {
            let answer = first.json();
            if first.status != *status || answer["error"] != *label {
                return Err(format!("got {} {answer}", first.status));
            }
        }
        Expect::Protocol { status } => {
            if first.status != *status || !exchange.closed {
                return Err(format!(
                    "got {} (closed: {}) {}",
                    first.status, exchange.closed, first.head
                ));
            }
        }
    }
    if exchange.responses.len() != 1 {
        return Err(format!("{} responses", exchange.responses.len()));
    }
    case.check.map_or(Ok(()), |check| check(exchange))
}

#[tokio::test]
async fn hostile_requests_get_their_documented_answer_and_ingest_stays_healthy() {
    let Some(tansu) = testbed::kafka::Tansu::start().await else {
        eprintln!("skipping hostile requests: tansu not available");
        return;
    };
    tansu.create_topic(TOPIC, 1).await.unwrap();
    let flags = [
        "--kafka-topic",
        TOPIC,
        // The table is sent from one address faster than the default per-IP limit.
        "--ip-rate-per-second",
        "100000",
        "--ip-burst",
        "100000",
        // A connection the server keeps open is noticed within the read timeout below.
        "--header-read-timeout-ms",
        "2000",
        "--idle-timeout-ms",
        "2000",
        // Above the body limit, so the big-string cases reach the producer's own
        // `message.max.bytes` refusal; the default 64 KiB cap is covered by tests/memory.rs.
        "--max-report-bytes",
        "2097152",
    ];
    let server = Server::start(PROJECTS, &tansu.bootstrap(), &flags).await;
    let http = client();

    let cases = cases();
    let mut failures = Vec::new();
    let mut expected_documents: BTreeMap<String, usize> = BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        let label = match &case.expect {
            Expect::Refused { label, .. } => Some(*label),
            _ => None,
        };
        let before = counters(&server, label).await;
        let exchange = exchange(&server, &case.request, Duration::from_secs(5)).await;
        let after = counters(&server, label).await;
        let mut verdict = judge(case, &exchange);
        if verdict.is_ok() {
            let (rejected, protocol) = (after.0 - before.0, after.1 - before.1);
            let counted = match case.expect {
                Expect::Accepted { .. } => protocol == 0.0,
                Expect::Refused { .. } => rejected == 1.0 && protocol == 0.0,
                Expect::Protocol { .. } => protocol == 1.0,
            };
            if !counted {
                verdict = Err(format!(
                    "counters: rejections +{rejected}, protocol errors +{protocol}"
                ));
            }
        }
        eprintln!(
            "case {:>2} {:<62} -> {} {}",
            i,
            case.name,
            exchange
                .responses
                .first()
                .map_or("none".to_owned(), |r| r.status.to_string()),
            exchange
                .responses
                .first()
                .map_or(String::new(), |r| String::from_utf8_lossy(
                    &r.body[..r.body.len().min(160)]
                )
                .into_owned()),
        );
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}", case.name));
        }
        if let Expect::Accepted { documents } = &case.expect {
            for d in documents {
                *expected_documents.entry(d.clone()).or_default() += 1;
            }
        }

        // The service is still healthy and still accepts a normal report.
        for path in ["/healthz", "/readyz"] {
            let status = http
                .get(format!("{}{path}", server.admin))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{path} after case {}", case.name);
        }
        let probe = format!("https://shop.example/probe/{i}");
        let response = http
            .post(server.url(PATH))
            .header("content-type", "application/csp-report")
            .body(csp(&probe, "https://evil.example/x.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            202,
            "normal report after case {}",
            case.name
        );
        *expected_documents.entry(probe).or_default() += 1;
    }

    // Exactly the probes and the accepted cases reached Kafka: refused cases published nothing,
    // and the smuggled request was never processed.
    let consumed = testbed::kafka::consume_all(
        &tansu.bootstrap(),
        TOPIC,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let messages: Vec<schemas::ReportMessage> = consumed
        .iter()
        .map(|c| schemas::ReportMessage::decode(&c.payload).unwrap())
        .collect();
    let mut published: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        let d = m.report.document_url.clone().unwrap_or_default();
        *published.entry(d).or_default() += 1;
    }
    if published != expected_documents {
        failures.push(format!(
            "kafka holds {published:?}, expected {expected_documents:?}"
        ));
    }
    let by_doc = |name: &str| {
        messages
            .iter()
            .find(|m| m.report.document_url.as_deref() == Some(doc(name).as_str()))
    };
    if let Some(m) = by_doc("huge-string") {
        let sample = m.report.sample.as_deref().unwrap_or_default();
        if sample.len() != 900 * 1024 || sample.bytes().any(|b| b != b'A') {
            failures.push(format!("huge string: sample of {} bytes", sample.len()));
        }
    }
    if let Some(m) = by_doc("escaped-nul") {
        if m.report.sample.as_deref() != Some("a\u{0}b") {
            failures.push(format!("escaped NUL: sample {:?}", m.report.sample));
        }
    }
    // Duplicate keys: the winner is the document URL above; the loser is dropped, not kept in
    // `extra`, for small and big (hash-backed in simd-json) objects alike.
    if let Some(m) = by_doc("dup-second") {
        if m.report.extra.to_map().contains_key("document-uri") {
            failures.push(format!("duplicate keys: extra {:?}", m.report.extra));
        }
    }
    if let Some(m) = by_doc("dup-big-second") {
        if m.report.extra.to_map().contains_key("document-uri") {
            failures.push(format!("duplicate keys (big): extra {:?}", m.report.extra));
        }
    }
    // Numeric fields that are not numbers are left out of the field and kept in `extra`.
    if let Some(m) = by_doc("nan") {
        let r = &m.report;
        let extra = r.extra.to_map();
        let kept = ["status-code", "line-number", "column-number"]
            .iter()
            .all(|k| extra.get(*k).is_some_and(serde_json::Value::is_string));
        if r.status_code.is_some() || r.line_number.is_some() || r.column_number.is_some() || !kept
        {
            failures.push(format!("NaN-like: {r:?}"));
        }
    }
    if let Some(m) = by_doc("minus-zero") {
        if m.report.line_number != Some(0) {
            failures.push(format!("-0: line {:?}", m.report.line_number));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
