//! The public HTTP API (Sentry-compatible), one request from start to answer:
//!
//! - `POST /api/{project_id}/security/?sentry_key={key}` and the legacy alias
//!   `/api/{project_id}/csp-report/` (trailing slash optional). The key may also come in
//!   `X-Sentry-Auth: Sentry sentry_key=...` or `Authorization: Sentry sentry_key=...`;
//!   `sentry_environment` and `sentry_release` are kept in every message.
//! - `POST /api/{project_id}/security/{key}/`: the key in the path, for CDNs and proxies that
//!   strip query strings.
//! - `OPTIONS` on those paths: 204 with static CORS headers (never credentials).
//! - Other methods 405 (with `Allow`), other paths 404.
//!
//! Flow: per-IP limit (every request, whatever its path or method) -> route ->
//! [`auth`](crate::auth) -> in-flight shares ([`inflight`](crate::inflight)) -> body
//! ([`validate`](crate::validate), at the [`body_rate`](crate::body_rate) minimum rate)
//! -> [`filter`](crate::filter) -> project quota (per report) -> [`privacy`](crate::privacy) ->
//! publish -> 202 `{"accepted":n,"filtered":m,"rejected":k}`.
//!
//! Privacy: request headers are never logged or stored, except `User-Agent` (truncated) in the
//! message; same-origin `report-uri` uploads carry the page's cookies, and they go nowhere.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::body_rate::ReceivedBytes;
use crate::filter::{self, Verdict};
use crate::limit::{self, IpLimiter};
use crate::projects::{Project, Projects};
use crate::publish::{OutgoingMessage, PublishError, Publisher};
use crate::rejection::{json_bytes_response, Rejection};
use crate::validate::{self, BodyLimits, Encoding, ParserPool};
use crate::{auth, metrics, privacy};
use schemas::parse::{ParsedBody, ParsedReport};

/// A matched report path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPath<'a> {
    pub project_id: u64,
    pub path_key: Option<&'a str>,
    /// Bounded metric label of the route.
    pub label: &'static str,
}

/// Every route label [`match_path`] gives.
pub const ROUTE_LABELS: [&str; 3] = ["security", "csp_report", "security_path_key"];

/// Matches `/api/{id}/security[/]`, `/api/{id}/csp-report[/]` and `/api/{id}/security/{key}[/]`.
pub fn match_path(path: &str) -> Option<ReportPath<'_>> {
    let rest = path.strip_prefix("/api/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (project_id, rest) = split_once_byte(rest, b'/')?;
    let project_id = project_id.parse::<u64>().ok()?;
    let (route, key) = match split_once_byte(rest, b'/') {
        Some((route, key)) => (route, Some(key)),
        None => (rest, None),
    };
    let (label, path_key) = match (route, key) {
        ("security", None) => ("security", None),
        ("csp-report", None) => ("csp_report", None),
        ("security", Some(key)) if !key.is_empty() && !key.contains('/') => {
            ("security_path_key", Some(key))
        }
        _ => return None,
    };
    Some(ReportPath {
        project_id,
        path_key,
        label,
    })
}

/// `text.split_once(byte as char)` for an ASCII `byte`, with memchr: a `str` char search costs
/// about 100 instructions to set up, and every request's path is split twice.
fn split_once_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    memchr::memchr(byte, text.as_bytes()).map(|at| (&text[..at], &text[at + 1..]))
}

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct App {
    pub projects: Arc<Projects>,
    pub ip_limiter: Arc<IpLimiter>,
    pub parsers: Arc<ParserPool>,
    pub publisher: Publisher,
    pub body_limits: BodyLimits,
    /// Whose `X-Forwarded-For` is believed ([`crate::client`]).
    pub trusted_proxies: crate::client::TrustedProxies,
    pub unavailable_retry_after: Duration,
    /// Report requests in flight: the global cap and the per-IP and per-project shares.
    pub in_flight: crate::inflight::InFlight,
    /// The slowest a body may arrive.
    pub body_rate: crate::body_rate::MinRate,
    /// Server faults repeat per request (e.g. Kafka down): log at most one per second.
    pub error_logs: LogGate,
    /// The accepted path's metric handles.
    pub metrics: metrics::Hot,
}

/// Lets one log line through per interval; the rest are only counted in metrics.
#[derive(Debug)]
pub struct LogGate {
    start: Instant,
    every_ms: u64,
    next_ms: std::sync::atomic::AtomicU64,
}

impl LogGate {
    pub fn new(every: Duration) -> Self {
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        Self {
            start: Instant::now(),
            every_ms,
            next_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn allow(&self) -> bool {
        let now_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.allow_at(now_ms)
    }

    /// Whether a line may be logged at `now_ms` (milliseconds since the gate was made).
    fn allow_at(&self, now_ms: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let next = self.next_ms.load(Relaxed);
        now_ms >= next
            && self
                .next_ms
                .compare_exchange(next, now_ms.saturating_add(self.every_ms), Relaxed, Relaxed)
                .is_ok()
    }
}

/// What a message adds to its report's share of the body: envelope fields (id, project,
/// fingerprint, client IP, user agent) and the normalised report's field names.
const MESSAGE_OVERHEAD_BYTES: usize = 512;

/// Longest `User-Agent` kept.
const MAX_USER_AGENT_LEN: usize = 512;

impl crate::server::Handler for App {
    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        received: ReceivedBytes,
    ) -> Response<Full<Bytes>> {
        let start = Instant::now();
        let method = request.method().clone();
        // Every request counts against its client's limit: preflights, 404s and 405s are as
        // cheap to send as reports.
        let ip = self.trusted_proxies.client_ip(request.headers(), peer);
        let limited = self.ip_limiter.check(ip);
        let (label, result) = match match_path(request.uri().path()) {
            None => ("not_found", limited.and(Err(Rejection::NotFound))),
            Some(path) => {
                let label = path.label;
                let result = match (limited, method) {
                    (Err(limited), _) => Err(limited),
                    (Ok(()), Method::OPTIONS) => Ok(preflight()),
                    (Ok(()), Method::POST) => {
                        let project_id = path.project_id;
                        let path_key = path.path_key.map(str::to_owned);
                        self.ingest(project_id, path_key.as_deref(), request, ip, &received)
                            .await
                    }
                    (Ok(()), _) => Err(Rejection::MethodNotAllowed),
                };
                (label, result)
            }
        };
        let mut response = result.unwrap_or_else(|rejection| {
            metrics::rejection(rejection.reason(), 1);
            if rejection.is_server_fault() {
                if self.error_logs.allow() {
                    tracing::error!(reason = rejection.reason(), error = %schemas::error_chain(&rejection), "request refused");
                }
            } else {
                tracing::debug!(reason = rejection.reason(), route = label, "request refused");
            }
            rejection.into_response()
        });
        // WebKit uploads in CORS mode: every answer allows any origin, never credentials.
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        self.metrics
            .request(label, response.status(), start.elapsed());
        response
    }
}

/// The static preflight answer accepted by Chromium's Reporting API and Expect-CT uploaders
/// (`content-type` must be listed literally; `*` is not accepted there).
fn preflight() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// The 202 body: how many reports of the request were stored, filtered and refused.
#[derive(Debug, serde::Serialize)]
struct Answer {
    accepted: usize,
    filtered: usize,
    rejected: usize,
}

impl Answer {
    /// The 202 answer. The body is written by hand: the same bytes as `serde_json` gives for
    /// this struct (`tests::answer_is_what_serde_json_writes`), without its serializer
    /// (about 700 instructions of every accepted request, callgrind).
    fn response(&self) -> Response<Full<Bytes>> {
        // Written on the stack and copied once into an allocation of its exact length: a `Vec`
        // with spare capacity costs `Bytes` a second allocation for its shared header.
        let mut text = [0u8; Self::MAX_LEN];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            text[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        for (key, n) in [
            (&b"{\"accepted\":"[..], self.accepted),
            (b",\"filtered\":", self.filtered),
            (b",\"rejected\":", self.rejected),
        ] {
            put(key);
            let mut digits = [0u8; 20];
            put(schemas::fingerprint::decimal(n as u64, &mut digits));
        }
        put(b"}");
        json_bytes_response(StatusCode::ACCEPTED, text[..len].to_vec())
    }

    /// The longest body: the keys, the braces and three 20-digit numbers.
    const MAX_LEN: usize = 40 + 3 * 20;
}

/// What happened to the reports of one body.
#[derive(Debug, Default)]
struct Tally {
    filtered: usize,
    rejected: usize,
    host_not_allowed: usize,
}

/// The reports of one body that will be stored: the body's items, left where the parser put
/// them, each with its fate. (A report is about 400 bytes: moving the kept ones into a list of
/// their own and out again cost four copies of each, callgrind.)
struct Kept<'b> {
    items: Vec<Result<ParsedReport<'b>, schemas::ReportError>>,
    /// One per item: `Some(noise verdict)` when it is stored, `None` when not.
    stored: Vec<Option<Option<schemas::NoiseReason>>>,
}

impl<'b> Kept<'b> {
    /// How many reports will be stored.
    fn len(&self) -> usize {
        self.stored.iter().filter(|stored| stored.is_some()).count()
    }

    /// Every report to store, with its noise verdict.
    fn reports(
        &mut self,
    ) -> impl Iterator<Item = (&mut ParsedReport<'b>, Option<schemas::NoiseReason>)> {
        self.items
            .iter_mut()
            .zip(&self.stored)
            .filter_map(|(item, stored)| match (item, stored) {
                (Ok(report), Some(noise)) => Some((report, *noise)),
                _ => None,
            })
    }
}

impl App {
    /// One report request, in the order of the module doc: auth -> in-flight admission -> body
    /// -> parse -> filter -> quota -> privacy -> publish. The per-client limit and the route
    /// were checked by [`handle`](crate::server::Handler::handle).
    async fn ingest(
        &self,
        project_id: u64,
        path_key: Option<&str>,
        request: Request<Incoming>,
        ip: IpAddr,
        received: &ReceivedBytes,
    ) -> Result<Response<Full<Bytes>>, Rejection> {
        let received_at_ms = now_ms();
        let (parts, body) = request.into_parts();
        let query = auth::QueryParams::parse(parts.uri.query());
        // One snapshot for the whole request: a reload never changes the rules mid-request.
        let snapshot = self.projects.snapshot();
        let key = auth::find_key(path_key, &query, &parts.headers);
        let project = auth::authorize(&snapshot, project_id, key)?;
        let encoding =
            Encoding::from_headers(&parts.headers).ok_or(Rejection::UnsupportedEncoding)?;
        // Held until the answer is built: bounds the bodies and messages held in memory, and
        // what one client or project can hold of that.
        let _admission = self.in_flight.admit(ip, project.id)?;
        let body = self.read_body(&parts, body, received).await?;
        // A plain body is parsed in place and its reports borrow their text from it until their
        // messages are written; an inflated one is parsed on the blocking pool into owned text.
        let mut plain: Vec<u8>;
        let (parsed, plain_len) = if encoding == Encoding::Identity {
            // At most `max_body_bytes` (1 MiB by default): parsing that inline stays well
            // within the runtime's budget.
            plain = Vec::from(body);
            let plain_len = plain.len();
            let parsed = self
                .parsers
                .parse_borrowed(&mut plain)
                .map_err(Rejection::Malformed)?;
            (parsed, plain_len)
        } else {
            let (parsed, plain_len) = self.inflate_and_parse(encoding, body).await?;
            (ParsedBody::from(parsed), plain_len)
        };
        // A message is about as long as its report's share of the body plus the fields ingest
        // adds: allocating that once spares the encoder its reallocations.
        let payload_capacity = plain_len / parsed.items.len().max(1) + MESSAGE_OVERHEAD_BYTES;
        let (kept, tally) = filter_reports(&project, parsed)?;
        // Only reports that will be stored count against the quota.
        limit::check_quota(&project.limiter, project.rate, kept.len())?;
        let context = MessageContext {
            project: &project,
            received_at_ms,
            environment: query.environment,
            release: query.release,
            client_ip: privacy::client_ip(&project.privacy, ip),
            user_agent: user_agent(&parts.headers),
            payload_capacity,
            format: self.publisher.message_format(),
        };
        let accepted = self.publish(&context, kept).await?;
        let answer = Answer {
            accepted,
            filtered: tally.filtered,
            rejected: tally.rejected,
        };
        Ok(answer.response())
    }

    /// The whole body, within the size limits and at the minimum rate.
    async fn read_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        received: &ReceivedBytes,
    ) -> Result<Bytes, Rejection> {
        let read = validate::read_body(&parts.headers, body, self.body_limits);
        self.body_rate.enforce(Some(received), read).await
    }

    /// A compressed body inflated and parsed into reports, with its decoded length.
    async fn inflate_and_parse(
        &self,
        encoding: Encoding,
        body: Bytes,
    ) -> Result<(schemas::Parsed, usize), Rejection> {
        // Inflating can take milliseconds (a small body may expand to
        // `max_decompressed_bytes`), so it and the parse run on the blocking pool.
        let parsers = Arc::clone(&self.parsers);
        let max = self.body_limits.max_decompressed_bytes;
        tokio::task::spawn_blocking(move || {
            let mut plain = parsers.decode(encoding, body, max)?;
            let plain_len = plain.len();
            let parsed = parsers.parse(&mut plain).map_err(Rejection::Malformed)?;
            Ok::<_, Rejection>((parsed, plain_len))
        })
        .await
        .map_err(Rejection::Worker)?
    }

    /// Builds the messages (privacy applied) and publishes them; the number published.
    async fn publish(
        &self,
        context: &MessageContext<'_>,
        mut kept: Kept<'_>,
    ) -> Result<usize, Rejection> {
        let mut messages = Vec::with_capacity(kept.len());
        for (report, noise) in kept.reports() {
            messages.push(context.message(report, noise));
        }
        let accepted = messages.len();
        if accepted > 0 {
            let publish_start = Instant::now();
            let published = self.publisher.publish(messages).await;
            self.metrics.publish(publish_start.elapsed());
            if let Err(source) = published {
                metrics::publish_error(source.reason());
                return Err(match source {
                    PublishError::MessageTooLarge(_) => Rejection::MessageTooLarge(source),
                    source => Rejection::Unavailable {
                        retry_after: self.unavailable_retry_after,
                        source,
                    },
                });
            }
        }
        for (report, _noise) in kept.reports() {
            self.metrics.accepted(report.kind.as_str());
        }
        Ok(accepted)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The project's filters over every parsed report: the ones to store, and the count of the
/// others. A body whose only reports come from hosts the project does not allow is refused.
fn filter_reports<'b>(
    project: &Project,
    parsed: ParsedBody<'b>,
) -> Result<(Kept<'b>, Tally), Rejection> {
    let mut tally = Tally::default();
    let mut stored = Vec::with_capacity(parsed.items.len());
    for item in &parsed.items {
        stored.push(match item {
            Err(error) => {
                tally.rejected += 1;
                metrics::report_error(error.reason());
                metrics::reports("invalid", "rejected", 1);
                None
            }
            Ok(report) => match filter::judge_view(project, &report.view()) {
                Verdict::Keep { noise } => Some(noise),
                Verdict::Filtered(reason) => {
                    tally.filtered += 1;
                    metrics::filtered(reason);
                    metrics::reports(report.kind.as_str(), "filtered", 1);
                    None
                }
                Verdict::HostNotAllowed => {
                    tally.rejected += 1;
                    tally.host_not_allowed += 1;
                    metrics::report_error("host_not_allowed");
                    metrics::reports(report.kind.as_str(), "rejected", 1);
                    None
                }
            },
        });
    }
    let kept = Kept {
        items: parsed.items,
        stored,
    };
    if kept.len() == 0 && tally.filtered == 0 && tally.host_not_allowed > 0 {
        return Err(Rejection::HostNotAllowed);
    }
    Ok((kept, tally))
}

/// The request's `User-Agent`, truncated, when it is valid text (borrowed from the headers).
fn user_agent(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| truncate(ua, MAX_USER_AGENT_LEN))
}

/// Fields shared by every message of one request.
struct MessageContext<'a> {
    project: &'a Project,
    received_at_ms: u64,
    environment: Option<Cow<'a, str>>,
    release: Option<Cow<'a, str>>,
    client_ip: Option<String>,
    user_agent: Option<&'a str>,
    /// Bytes allocated up front for each encoded message.
    payload_capacity: usize,
    /// `--kafka-message-format`.
    format: schemas::MessageFormat,
}

impl MessageContext<'_> {
    /// The report's Kafka message, encoded straight from the report and the request's fields
    /// (borrowed through a [`schemas::MessageView`]: no string is copied into an owned message).
    fn message(
        &self,
        report: &mut ParsedReport<'_>,
        noise: Option<schemas::NoiseReason>,
    ) -> OutgoingMessage {
        privacy::apply_parsed(&self.project.privacy, report);
        let view = report.view();
        let fingerprint = schemas::fingerprint::fingerprint_view(self.project.id, &view);
        let key = schemas::dedup_key(fingerprint, self.client_ip.as_deref().unwrap_or(""));
        let mut id = uuid::Uuid::encode_buffer();
        let fingerprint = Hex16::new(fingerprint);
        let message = schemas::MessageView {
            v: schemas::MESSAGE_VERSION,
            id: uuid::Uuid::now_v7().hyphenated().encode_lower(&mut id),
            received_at_ms: self.received_at_ms,
            project_id: self.project.id,
            environment: self.environment.as_deref(),
            release: self.release.as_deref(),
            client_ip: self.client_ip.as_deref(),
            request_user_agent: self.user_agent,
            fingerprint: fingerprint.as_str(),
            noise: noise.map(schemas::NoiseReason::as_str),
            report: view,
        };
        let mut payload = Vec::with_capacity(self.payload_capacity);
        message.encode_as(self.format, &mut payload);
        OutgoingMessage {
            key: Hex16::new(key).as_str().to_owned(),
            payload,
        }
    }
}

/// A `u64` as 16 lowercase hex digits (`format!("{n:016x}")` without the formatting machinery
/// or an allocation).
struct Hex16([u8; 16]);

impl Hex16 {
    /// All 16 digits at once in a `u128`, one per byte (about a third of the instructions of a
    /// digit-by-digit loop; two keys per report).
    fn new(n: u64) -> Self {
        // 0x0101...01: one in each byte.
        const ONES: u128 = u128::MAX / 0xff;
        // Spread the 16 nibbles of `n` into the low nibbles of 16 bytes, most significant first.
        let mut x = u128::from(n);
        x = (x | (x << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
        x = (x | (x << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
        x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
        x = (x | (x << 4)) & (ONES * 0x0f);
        // '0' + digit, and 'a' - '0' - 10 = 39 more where the digit is over 9 (its byte + 6
        // carries into bit 4).
        let over_nine = ((x + ONES * 6) >> 4) & ONES;
        Self((x + ONES * u128::from(b'0') + over_nine * 39).to_be_bytes())
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("cannot fail: hex digits are ASCII")
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let m = |p| match_path(p).map(|r| (r.project_id, r.path_key, r.label));
        assert_eq!(m("/api/42/security/"), Some((42, None, "security")));
        assert_eq!(m("/api/42/security"), Some((42, None, "security")));
        assert_eq!(m("/api/42/csp-report/"), Some((42, None, "csp_report")));
        assert_eq!(m("/api/42/csp-report"), Some((42, None, "csp_report")));
        assert_eq!(
            m("/api/42/security/abc/"),
            Some((42, Some("abc"), "security_path_key"))
        );
        assert_eq!(
            m("/api/42/security/abc"),
            Some((42, Some("abc"), "security_path_key"))
        );
        for bad in [
            "/",
            "/api/x/security/",
            "/api/42/",
            "/api/42/store/",
            "/api/42/security/a/b",
            "/api//security/",
            "/api/42/csp-report/k",
        ] {
            assert_eq!(m(bad), None, "{bad}");
        }
    }

    /// `match_path` as it was (`split('/')`), the reference of the byte-search version.
    fn match_path_before(path: &str) -> Option<ReportPath<'_>> {
        let rest = path.strip_prefix("/api/")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = rest.split('/');
        let project_id = parts.next()?.parse::<u64>().ok()?;
        let (label, path_key) = match (parts.next()?, parts.next(), parts.next()) {
            ("security", None, None) => ("security", None),
            ("csp-report", None, None) => ("csp_report", None),
            ("security", Some(key), None) if !key.is_empty() => ("security_path_key", Some(key)),
            _ => return None,
        };
        Some(ReportPath {
            project_id,
            path_key,
            label,
        })
    }

    proptest::proptest! {
        /// Any path made of the routes' pieces is matched as the `split('/')` version matched it.
        #[test]
        fn paths_match_as_before(
            pieces in proptest::collection::vec(proptest::sample::select(
                &["/api/", "/", "42", "x", "security", "csp-report", "k\u{e9}y", ""][..]), 0..7),
        ) {
            let path = pieces.concat();
            proptest::prop_assert_eq!(match_path(&path), match_path_before(&path), "{}", path);
        }
    }

    /// The hand-written 202 body is what `serde_json` writes for `Answer`, status and
    /// content type included.
    #[tokio::test]
    async fn answer_is_what_serde_json_writes() {
        for (accepted, filtered, rejected) in
            [(1, 0, 0), (0, 0, 0), (12, 3, 100), (usize::MAX, 9, 10)]
        {
            let answer = Answer {
                accepted,
                filtered,
                rejected,
            };
            let response = answer.response();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(body, serde_json::to_vec(&answer).unwrap(), "{answer:?}");
        }
    }

    #[test]
    fn hex16_is_zero_padded_lowercase_hex() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            0xabc,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            1 << 63,
        ] {
            assert_eq!(Hex16::new(n).as_str(), format!("{n:016x}"));
        }
    }

    proptest::proptest! {
        /// The all-digits-at-once `Hex16` writes what `format!("{n:016x}")` writes.
        #[test]
        fn hex16_is_what_format_writes(n in proptest::num::u64::ANY) {
            let hex = Hex16::new(n);
            proptest::prop_assert_eq!(hex.as_str(), format!("{n:016x}"));
        }
    }

    #[test]
    fn log_gate_lets_one_line_per_interval() {
        let gate = LogGate::new(Duration::from_secs(1));
        assert!(gate.allow_at(0));
        assert!(!gate.allow_at(999));
        assert!(gate.allow_at(1000));
        assert!(!gate.allow_at(1500));
    }
}
