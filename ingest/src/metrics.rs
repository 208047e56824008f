//! Catalog of every metric ingest emits, with one typed helper each. Names follow
//! `ingest_<subject>_<unit>[_total]` in base units; every label value comes from a bounded enum
//! or a `&'static str` label (never a URL, key or error text).

use std::time::Duration;

/// Bucket bounds of every ingest histogram (they are all durations in seconds).
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests answered, by route and status code.
pub const REQUESTS_TOTAL: &str = "ingest_requests_total";
/// Time from request start to answer.
pub const REQUEST_DURATION_SECONDS: &str = "ingest_request_duration_seconds";
/// Reports by kind (`schemas::ReportKind::as_str`, or `invalid` for a batch item that did not
/// parse) and outcome (`accepted`, `filtered`, `rejected`).
pub const REPORTS_TOTAL: &str = "ingest_reports_total";
/// Refused requests (every non-2xx answer of the public listener), by reason.
pub const REJECTIONS_TOTAL: &str = "ingest_rejections_total";
/// Single reports refused inside a body (bad batch items, document host not allowed), by reason.
pub const REPORT_ERRORS_TOTAL: &str = "ingest_report_errors_total";
/// Reports filtered (answered 2xx, not stored), by reason.
pub const FILTERED_TOTAL: &str = "ingest_filtered_total";
/// Time `Publisher::publish` took (until every report of a request was acknowledged).
pub const PUBLISH_DURATION_SECONDS: &str = "ingest_publish_duration_seconds";
/// Publish failures by reason.
pub const PUBLISH_ERRORS_TOTAL: &str = "ingest_publish_errors_total";
/// Messages in the Kafka producer queue (set when `/metrics` is scraped).
pub const KAFKA_QUEUE_DEPTH: &str = "ingest_kafka_queue_depth";
/// Projects file reloads by result (`ok`, `error`, `incomplete`: the file lacks the end marker
/// the file in force has, taken as written half-way and retried at the next poll).
pub const PROJECTS_RELOAD_TOTAL: &str = "ingest_projects_reload_total";
/// Projects in the current snapshot.
pub const PROJECTS_LOADED: &str = "ingest_projects_loaded";
/// Open public connections.
pub const CONNECTIONS_OPEN: &str = "ingest_connections_open";
/// Connections that ended in an error (TLS handshake, protocol), by reason.
pub const CONNECTION_ERRORS_TOTAL: &str = "ingest_connection_errors_total";
/// Connections closed as soon as they were accepted, by reason (`per_ip_cap`: the peer IP
/// already held `--max-connections-per-ip`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "ingest_connections_refused_total";
/// TLS certificate reloads by result (`ok`, `error`: the old pair stays in use).
pub const TLS_RELOADS_TOTAL: &str = "ingest_tls_reloads_total";
/// Clients (IPv4 addresses, IPv6 /64s by default) tracked by the per-IP limiter.
pub const IP_LIMITER_TRACKED: &str = "ingest_ip_limiter_tracked";
/// Requests from new clients limited by their network's overflow bucket because the map was full.
pub const IP_LIMITER_OVERFLOW_TOTAL: &str = "ingest_ip_limiter_overflow_total";
/// Kafka producers replaced after librdkafka fenced or failed the idempotent producer.
pub const KAFKA_PRODUCER_RESTARTS_TOTAL: &str = "ingest_kafka_producer_restarts_total";

/// Handles of the metrics every accepted request updates, registered once when the app is
/// built (after the recorder is installed). A `counter!` with labels builds its key and
/// searches the registry on every call: four of them were about 5,000 instructions of a
/// request (callgrind, `deploy/scripts/profile-ingest.sh`). Other label sets (rejections,
/// other statuses) still go through the macros.
#[derive(Debug)]
pub struct Hot {
    /// `ingest_reports_total{outcome="accepted"}` by kind label.
    accepted: Vec<(&'static str, metrics::Counter)>,
    /// `ingest_requests_total{status="202"}` and the duration histogram, by route label.
    answered: Vec<(&'static str, metrics::Counter, metrics::Histogram)>,
    publish: metrics::Histogram,
}

impl Hot {
    /// Registers the handles for every report kind and the given route labels.
    pub fn new(routes: &[&'static str]) -> Self {
        let accepted = schemas::ReportKind::ALL
            .iter()
            .map(|kind| {
                let kind = kind.as_str();
                let counter =
                    metrics::counter!(REPORTS_TOTAL, "kind" => kind, "outcome" => "accepted");
                (kind, counter)
            })
            .collect();
        let answered = routes
            .iter()
            .map(|&route| {
                let counter =
                    metrics::counter!(REQUESTS_TOTAL, "route" => route, "status" => "202");
                let histogram = metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => route);
                (route, counter, histogram)
            })
            .collect();
        Self {
            accepted,
            answered,
            publish: metrics::histogram!(PUBLISH_DURATION_SECONDS),
        }
    }

    /// As [`reports`]`(kind, "accepted", 1)`.
    pub fn accepted(&self, kind: &'static str) {
        match self.accepted.iter().find(|(known, _)| *known == kind) {
            Some((_, counter)) => counter.increment(1),
            None => reports(kind, "accepted", 1),
        }
    }

    /// As [`request`].
    pub fn request(&self, route: &'static str, status: http::StatusCode, took: Duration) {
        if status == http::StatusCode::ACCEPTED {
            if let Some((_, counter, histogram)) =
                self.answered.iter().find(|(known, _, _)| *known == route)
            {
                counter.increment(1);
                histogram.record(took.as_secs_f64());
                return;
            }
        }
        request(route, status, took);
    }

    /// As [`publish`].
    pub fn publish(&self, took: Duration) {
        self.publish.record(took.as_secs_f64());
    }
}

pub fn request(route: &'static str, status: http::StatusCode, took: Duration) {
    metrics::counter!(REQUESTS_TOTAL, "route" => route, "status" => status_label(status))
        .increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => route).record(took.as_secs_f64());
}

pub fn reports(kind: &'static str, outcome: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(REPORTS_TOTAL, "kind" => kind, "outcome" => outcome).increment(n);
    }
}

pub fn rejection(reason: &'static str, n: u64) {
    metrics::counter!(REJECTIONS_TOTAL, "reason" => reason).increment(n);
}

pub fn report_error(reason: &'static str) {
    metrics::counter!(REPORT_ERRORS_TOTAL, "reason" => reason).increment(1);
}

pub fn filtered(reason: &'static str) {
    metrics::counter!(FILTERED_TOTAL, "reason" => reason).increment(1);
}

pub fn publish(took: Duration) {
    metrics::histogram!(PUBLISH_DURATION_SECONDS).record(took.as_secs_f64());
}

pub fn publish_error(reason: &'static str) {
    metrics::counter!(PUBLISH_ERRORS_TOTAL, "reason" => reason).increment(1);
}

pub fn kafka_queue_depth(depth: usize) {
    metrics::gauge!(KAFKA_QUEUE_DEPTH).set(depth as f64);
}

pub fn projects_reload(result: &'static str) {
    metrics::counter!(PROJECTS_RELOAD_TOTAL, "result" => result).increment(1);
}

pub fn projects_loaded(n: usize) {
    metrics::gauge!(PROJECTS_LOADED).set(n as f64);
}

pub fn connection_opened() {
    metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
}

pub fn connection_closed() {
    metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
}

pub fn connection_error(reason: &'static str) {
    metrics::counter!(CONNECTION_ERRORS_TOTAL, "reason" => reason).increment(1);
}

pub fn connection_refused(reason: &'static str) {
    metrics::counter!(CONNECTIONS_REFUSED_TOTAL, "reason" => reason).increment(1);
}

pub fn tls_reload(result: &'static str) {
    metrics::counter!(TLS_RELOADS_TOTAL, "result" => result).increment(1);
}

pub fn ip_limiter_tracked(n: usize) {
    metrics::gauge!(IP_LIMITER_TRACKED).set(n as f64);
}

pub fn ip_limiter_overflow() {
    metrics::counter!(IP_LIMITER_OVERFLOW_TOTAL).increment(1);
}

pub fn kafka_producer_restart() {
    metrics::counter!(KAFKA_PRODUCER_RESTARTS_TOTAL).increment(1);
}

/// The numeric status as a static label (statuses we send are a small fixed set).
fn status_label(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        410 => "410",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}
