//! `palisade-load`: a bounded, loopback-only load generator for ingest (and the baseline).
//!
//! Workers ([`Args::concurrency`]) POST bodies from a [`crate::corpus::Mix`] until the duration or
//! the request count is reached. Closed loop (the default): each worker sends its next request
//! as soon as the previous answer arrived. Open loop (`--rate N`): request `k` is due at
//! `start + k / N`; a worker picks the next due request, waits for its time, and its latency is
//! measured from that *intended* time, so a stalled server shows up as latency instead of
//! silently lowering the offered load (no coordinated omission). When every worker is busy the
//! backlog shows as latency; raise `--concurrency` if the generator itself is the limit.
//!
//! Bounds: at most [`MAX_DURATION`], at most `--requests` requests, at most [`MAX_CONCURRENCY`]
//! workers (each holds one connection, or shares one of `--h2-connections`), one histogram per
//! worker (fixed size, 1 µs to 60 s at 3 significant digits), status counts keyed by status
//! code (at most 500 keys). Targets must be loopback addresses.

pub mod client;
pub mod summary;
pub mod watch;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use http::{HeaderValue, Uri};

use crate::corpus::{Mix, Profile};
use client::{Client, H2Session, Mode, Outgoing};
use summary::{Summary, Watched};

/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most workers.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Largest latency the histograms hold, in microseconds (longer ones are clamped to it).
pub const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// Load generator for Palisade ingest (loopback targets only).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "palisade-load", about)]
pub struct Args {
    /// Endpoint URL. `{project}` and `{key}` are replaced per tenant (see `--tenants`), e.g.
    /// `http://127.0.0.1:8080/api/{project}/security/?sentry_key={key}`; without them every
    /// request goes to the URL as given. Loopback hosts only.
    #[arg(long, alias = "url-template")]
    pub url: String,
    /// Tenants: request `j` goes to tenant `1 + j % N`, i.e. project id `i` with the key
    /// `--key-template` gives for `i`. Default 1.
    #[arg(long, default_value_t = 1)]
    pub tenants: u64,
    /// The key of tenant `i`: `{project}` is replaced by `i`. Default `load-key-{project}`.
    #[arg(long, default_value = "load-key-{project}")]
    pub key_template: String,
    /// `keepalive` (HTTP/1.1, one reused connection per worker), `new-connection` (HTTP/1.1,
    /// a new connection per request) or `h2` (HTTP/2 prior knowledge over cleartext). Default
    /// keepalive.
    #[arg(long, default_value = "keepalive")]
    pub mode: Mode,
    /// HTTP/2 connections the workers share round-robin (`--mode h2` only). Default 1.
    #[arg(long, default_value_t = 1)]
    pub h2_connections: usize,
    /// Concurrent workers (requests in flight at most). Default 32, at most 10000.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Open loop: offer this many requests per second in total, latency measured from each
    /// request's intended send time. Default: closed loop (as fast as answers come).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many seconds. Default 10, at most 600.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Stop after this many requests in total. Default 1,000,000,000 (the duration decides).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub requests: u64,
    /// Bodies: `legacy` (~700-byte legacy CSP reports), `batch` (Reporting API batches),
    /// `mixed` (weighted realistic mix), `corpus` (every corpus body in turn). Default mixed.
    #[arg(long, alias = "body", default_value = "mixed")]
    pub profile: Profile,
    /// Vary the document URL over this many values (a `/d{n}` path segment after the host), so
    /// reports have up to N distinct fingerprints instead of one per body. Default 1 (as is).
    #[arg(long, default_value_t = 1)]
    pub distinct: u64,
    /// Distinct client IPs, sent as `X-Forwarded-For: 10.x.y.z` (request `j` uses IP `j % N`,
    /// so `--requests >= N` touches them all); for an ingest started with
    /// `--trust-forwarded-for`. Default 0 (no header), at most 16,777,216.
    #[arg(long, default_value_t = 0)]
    pub client_ips: u64,
    /// Watch this process (repeatable): CPU seconds (utime+stime) during the run, CPU-µs per
    /// request and per report, peak RSS.
    #[arg(long)]
    pub watch_pid: Vec<u32>,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the load described by `args` and returns what it measured.
pub async fn run(args: &Args) -> anyhow::Result<Summary> {
    let plan = Plan::new(args)?;
    let duration = Duration::from_secs(args.duration_secs).min(MAX_DURATION);
    let concurrency = args.concurrency.clamp(1, MAX_CONCURRENCY);

    let sessions = if plan.mode == Mode::H2 {
        let mut sessions = Vec::new();
        for _ in 0..args.h2_connections.max(1) {
            sessions.push(
                H2Session::connect(plan.addr)
                    .await
                    .context("h2 connection")?,
            );
        }
        sessions
    } else {
        Vec::new()
    };

    let ticks = watch::clock_ticks();
    let cpu_before: Vec<Option<u64>> = args
        .watch_pid
        .iter()
        .map(|&p| watch::cpu_ticks(p))
        .collect();
    let self_before = watch::cpu_ticks(0);
    let started = Instant::now();
    let deadline = started + duration;
    let next = Arc::new(AtomicU64::new(0));
    let peaks: Arc<Vec<AtomicU64>> =
        Arc::new(args.watch_pid.iter().map(|_| AtomicU64::new(0)).collect());

    let sampler = {
        let (pids, peaks) = (args.watch_pid.clone(), Arc::clone(&peaks));
        tokio::spawn(async move {
            loop {
                for (pid, peak) in pids.iter().zip(peaks.iter()) {
                    if let Some(kib) = watch::status_kib(*pid, "VmRSS") {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(watch::SAMPLE_EVERY).await;
            }
        })
    };

    let plan = Arc::new(plan);
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let h2 = (!sessions.is_empty()).then(|| sessions[worker % sessions.len()].clone());
        let (plan, next) = (Arc::clone(&plan), Arc::clone(&next));
        let limit = args.requests;
        workers.push(tokio::spawn(async move {
            let client = Client::new(plan.mode, plan.addr, h2);
            work(&plan, client, &next, limit, started, deadline).await
        }));
    }
    let mut totals = Tally::new()?;
    for worker in workers {
        totals.merge(worker.await.context("worker panicked")??)?;
    }
    let elapsed = started.elapsed();
    sampler.abort();

    let self_after = watch::cpu_ticks(0);
    let watched = args
        .watch_pid
        .iter()
        .zip(cpu_before)
        .zip(peaks.iter())
        .map(|((&pid, before), peak)| Watched {
            pid,
            cpu_seconds: before
                .zip(watch::cpu_ticks(pid))
                .map(|(b, a)| a.saturating_sub(b) as f64 / ticks as f64),
            peak_rss_kib: Some(peak.load(Ordering::Relaxed)).filter(|&k| k > 0),
            hwm_rss_kib: watch::status_kib(pid, "VmHWM"),
        })
        .collect();
    let generator_cpu_seconds = self_before
        .zip(self_after)
        .map(|(b, a)| a.saturating_sub(b) as f64 / ticks as f64);

    Ok(Summary::new(
        args,
        &plan,
        elapsed,
        concurrency,
        totals,
        watched,
        generator_cpu_seconds,
    ))
}

/// What every worker shares: where to send, what to send.
#[derive(Debug)]
pub struct Plan {
    pub mode: Mode,
    pub addr: SocketAddr,
    /// Path and query per tenant (index 0 is tenant 1).
    pub paths: Vec<Uri>,
    pub mix: Mix,
    pub rate: Option<f64>,
    pub distinct: u64,
    pub client_ips: u64,
    pub display_url: String,
}

impl Plan {
    fn new(args: &Args) -> anyhow::Result<Self> {
        if args.tenants == 0 || args.tenants > 1_000_000 {
            bail!("--tenants must be between 1 and 1000000");
        }
        if args.client_ips > 1 << 24 {
            bail!("--client-ips is at most 16777216 (the 10.0.0.0/8 range)");
        }
        if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be a positive number of requests per second");
        }
        let tenant_url = |i: u64| {
            let key = args.key_template.replace("{project}", &i.to_string());
            args.url
                .replace("{project}", &i.to_string())
                .replace("{key}", &key)
        };
        let first: Uri = tenant_url(1).parse().context("invalid --url")?;
        let addr = loopback_addr(&first)?;
        let mut paths = Vec::with_capacity(usize::try_from(args.tenants).unwrap_or(1));
        for i in 1..=args.tenants {
            let uri: Uri = tenant_url(i).parse().context("invalid --url")?;
            let path = uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .context("invalid --url path")?;
            paths.push(path);
        }
        Ok(Self {
            mode: args.mode,
            addr,
            paths,
            mix: Mix::new(args.profile)?,
            rate: args.rate,
            distinct: args.distinct.max(1),
            client_ips: args.client_ips,
            display_url: tenant_url(1),
        })
    }

    /// The request with sequence number `j`.
    fn outgoing(&self, j: u64) -> (Outgoing<'_>, usize) {
        let sample = self.mix.pick(j);
        let body = if self.distinct > 1 {
            sample.with_document_variant(j % self.distinct)
        } else {
            sample.body.clone()
        };
        let tenant = usize::try_from(j % self.paths.len() as u64).unwrap_or(0);
        let forwarded_for = (self.client_ips > 0).then(|| client_ip(j % self.client_ips));
        let outgoing = Outgoing {
            path: &self.paths[tenant],
            content_type: sample.content_type,
            forwarded_for,
            body,
        };
        (outgoing, sample.reports)
    }
}

/// Client IP number `n` as an `X-Forwarded-For` value in 10.0.0.0/8.
fn client_ip(n: u64) -> HeaderValue {
    let [_, a, b, c] = u32::try_from(n).unwrap_or(0).to_be_bytes();
    let ip = Ipv4Addr::new(10, a, b, c);
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("10.0.0.1"))
}

/// The socket address of a loopback URL; refuses anything else.
fn loopback_addr(uri: &Uri) -> anyhow::Result<SocketAddr> {
    if uri.scheme_str() != Some("http") {
        bail!("--url must be http:// (h2 is HTTP/2 over cleartext)");
    }
    let host = uri.host().context("--url has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if bare == "localhost" {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        (bare, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .context("--url host is not an IP address")?
    };
    if !addr.ip().is_loopback() {
        bail!("refusing to load {host}: palisade-load only targets loopback addresses");
    }
    Ok(addr)
}

/// What one worker (then all of them) counted.
#[derive(Debug)]
pub struct Tally {
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<&'static str, u64>,
    /// Valid reports in the bodies answered 2xx.
    pub reports_2xx: u64,
    /// Sum of `accepted` in ingest's 202 answers (0 against the baseline).
    pub reports_accepted: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)?,
            statuses: BTreeMap::new(),
            transport_errors: BTreeMap::new(),
            reports_2xx: 0,
            reports_accepted: 0,
        })
    }

    fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.latency.add(&other.latency)?;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (error, n) in other.transport_errors {
            *self.transport_errors.entry(error).or_default() += n;
        }
        self.reports_2xx += other.reports_2xx;
        self.reports_accepted += other.reports_accepted;
        Ok(())
    }
}

async fn work(
    plan: &Plan,
    mut client: Client,
    next: &AtomicU64,
    limit: u64,
    started: Instant,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    loop {
        let j = next.fetch_add(1, Ordering::Relaxed);
        if j >= limit {
            break;
        }
        let intended = match plan.rate {
            Some(rate) => {
                let due = started + Duration::from_secs_f64(j as f64 / rate);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
        };
        let (outgoing, reports) = plan.outgoing(j);
        match client.send(outgoing).await {
            Ok(answer) => {
                let status = answer.status.as_u16();
                *tally.statuses.entry(status).or_default() += 1;
                if answer.status.is_success() {
                    tally.reports_2xx += reports as u64;
                    tally.reports_accepted += accepted(&answer.body);
                }
            }
            Err(error) => {
                let label = match error {
                    client::TransportError::Connect(_) => "connect",
                    client::TransportError::Handshake(_) => "handshake",
                    client::TransportError::Request(_) => "request",
                    client::TransportError::Build(_) => "build",
                };
                *tally.transport_errors.entry(label).or_default() += 1;
            }
        }
        let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally
            .latency
            .saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
    }
    Ok(tally)
}

/// `accepted` of ingest's `{"accepted":n,...}` answer; 0 when absent.
fn accepted(body: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"accepted\":";
    let Some(at) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return 0;
    };
    body[at + KEY.len()..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_accepted_from_ingest_answers() {
        assert_eq!(accepted(br#"{"accepted":3,"filtered":0,"rejected":1}"#), 3);
        assert_eq!(accepted(br#"{"accepted": 12}"#), 12);
        assert_eq!(accepted(b""), 0);
    }

    #[test]
    fn client_ips_cover_the_range_distinctly() {
        assert_eq!(client_ip(0), "10.0.0.0");
        assert_eq!(client_ip(1_000_000 - 1), "10.15.66.63");
        assert_eq!(client_ip((1 << 24) - 1), "10.255.255.255");
    }

    #[test]
    fn only_loopback_targets() {
        for ok in [
            "http://127.0.0.1:8080/x",
            "http://localhost:1/",
            "http://[::1]:9/",
        ] {
            assert!(loopback_addr(&ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/",
            "https://127.0.0.1/",
            "http://192.168.1.1:80/",
        ] {
            assert!(loopback_addr(&bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tenants_get_their_own_path_and_key() {
        use clap::Parser as _;
        let args = Args::try_parse_from([
            "palisade-load",
            "--url",
            "http://127.0.0.1:1/api/{project}/security/?sentry_key={key}",
            "--tenants",
            "3",
            "--client-ips",
            "2",
            "--profile",
            "legacy",
        ])
        .unwrap();
        let plan = Plan::new(&args).unwrap();
        let paths: Vec<String> = (0..4)
            .map(|j| plan.outgoing(j).0.path.to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/api/1/security/?sentry_key=load-key-1",
                "/api/2/security/?sentry_key=load-key-2",
                "/api/3/security/?sentry_key=load-key-3",
                "/api/1/security/?sentry_key=load-key-1",
            ]
        );
        assert_eq!(plan.outgoing(3).0.forwarded_for.unwrap(), "10.0.0.1");
        assert!(Args::try_parse_from(["palisade-load", "--url", "x", "--mode", "h3"]).is_err());
    }
}
