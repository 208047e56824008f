//! `palisade-probe`: POST-to-queryable latency of the whole pipeline, loopback only.
//!
//! Every `1 / --rate` seconds it POSTs one legacy CSP report whose document path is unique
//! (`/probe/<run>/<n>`) to ingest, and polls ClickHouse over HTTP every `--poll-ms` until the
//! row of each probe is in `reports`. The time from just before the POST to the poll that first
//! sees the row goes into an HDR histogram (resolution: the poll interval plus one query). After
//! `--duration-secs` it stops sending, waits up to `--timeout-secs` for the last probes, prints
//! p50/p90/p99/max and a `probe_json {...}` line for scripts, and exits non-zero if a probe was
//! refused or never became queryable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;

/// POST-to-queryable latency probe (loopback targets only).
#[derive(Debug, Parser)]
struct Args {
    /// Ingest endpoint including the key, e.g.
    /// `http://127.0.0.1:8080/api/1/security/?sentry_key=KEY`.
    #[arg(long)]
    url: String,
    /// ClickHouse HTTP URL, e.g. `http://127.0.0.1:8123`.
    #[arg(long)]
    clickhouse_url: String,
    /// Database holding `reports`. Default `palisade`.
    #[arg(long, default_value = "palisade")]
    database: String,
    /// Project id the ingest key belongs to (narrows the poll query). Default 1.
    #[arg(long, default_value_t = 1)]
    project_id: u64,
    /// Probes per second. Default 2.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Seconds to send probes for. Default 30, at most 600.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Poll interval, in milliseconds. Default 50.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Longest wait for one probe's row, in seconds; a probe not queryable by then is lost.
    /// Default 60.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// A legacy `report-uri` body; `{PATH}` becomes the probe's unique document path.
const BODY: &str = r#"{"csp-report":{"document-uri":"https://probe.example.com{PATH}","referrer":"","violated-directive":"script-src-elem","effective-directive":"script-src-elem","original-policy":"script-src 'self'; report-uri /api/1/security/","disposition":"enforce","blocked-uri":"https://probe-tracker.example.net/t.js","status-code":200}}"#;

/// Probes sent and not yet seen: path -> time just before the POST.
type Outstanding = Arc<Mutex<HashMap<String, Instant>>>;

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    refused: u64,
    seen: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for url in [&args.url, &args.clickhouse_url] {
        benches::loopback::ensure(url)?;
    }
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        bail!("--rate must be in (0, 1000]");
    }
    if !schemas::sql::is_identifier(&args.database) {
        bail!("--database must be a bare identifier");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let outstanding: Outstanding = Arc::default();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000, 3)?;

    let sender = tokio::spawn(send_probes(
        http.clone(),
        args.url.clone(),
        args.rate,
        Duration::from_secs(args.duration_secs.min(600)),
        run,
        outstanding.clone(),
        tally.clone(),
    ));
    let query_prefix = format!(
        "SELECT DISTINCT document_path FROM {}.reports WHERE project_id = {} AND window_start >= {} AND document_path IN (",
        args.database,
        args.project_id,
        started_unix.saturating_sub(120)
    );
    let poll = Duration::from_millis(args.poll_ms.max(1));
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut sending_done_at: Option<Instant> = None;
    let mut lost = 0u64;
    loop {
        tokio::time::sleep(poll).await;
        let paths: Vec<String> = lock(&outstanding).keys().cloned().collect();
        if !paths.is_empty() {
            let list = paths
                .iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(",");
            let query = format!("{query_prefix}{list}) FORMAT TabSeparated");
            match clickhouse_query(&http, &args.clickhouse_url, query).await {
                Ok(found) => {
                    let now = Instant::now();
                    let mut outstanding = lock(&outstanding);
                    for path in found.lines() {
                        if let Some(sent_at) = outstanding.remove(path) {
                            let millis = now.duration_since(sent_at).as_millis().max(1);
                            histogram.saturating_record(u64::try_from(millis).unwrap_or(u64::MAX));
                            lock(&tally).seen += 1;
                        }
                    }
                }
                Err(error) => eprintln!("clickhouse poll failed: {error:#}"),
            }
        }
        // Probes older than the timeout are lost.
        {
            let mut outstanding = lock(&outstanding);
            let before = outstanding.len();
            outstanding.retain(|_, sent_at| sent_at.elapsed() < timeout);
            lost += (before - outstanding.len()) as u64;
        }
        if sending_done_at.is_none() && sender.is_finished() {
            sending_done_at = Some(Instant::now());
        }
        if sending_done_at.is_some() && lock(&outstanding).is_empty() {
            break;
        }
    }
    sender.await.context("probe sender panicked")??;

    let tally = lock(&tally);
    let q = |quantile: f64| histogram.value_at_quantile(quantile);
    println!(
        "probes            sent {} refused {} queryable {} lost {}",
        tally.sent, tally.refused, tally.seen, lost
    );
    if !histogram.is_empty() {
        println!(
            "post->queryable   p50 {} ms  p90 {} ms  p99 {} ms  max {} ms  (poll every {} ms)",
            q(0.5),
            q(0.9),
            q(0.99),
            histogram.max(),
            poll.as_millis()
        );
    }
    println!(
        "probe_json {}",
        serde_json::json!({
            "sent": tally.sent, "refused": tally.refused, "queryable": tally.seen, "lost": lost,
            "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": histogram.max(),
            "poll_ms": poll.as_millis() as u64,
        })
    );
    if tally.refused > 0 || lost > 0 || tally.seen == 0 {
        bail!(
            "{} probe(s) refused, {lost} never queryable, {} seen",
            tally.refused,
            tally.seen
        );
    }
    Ok(())
}

/// POST one probe every `1 / rate` seconds for `duration`; each POST runs in its own task so a
/// slow answer does not delay the schedule.
async fn send_probes(
    http: reqwest::Client,
    url: String,
    rate: f64,
    duration: Duration,
    run: u128,
    outstanding: Outstanding,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + duration;
    let mut posts = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        interval.tick().await;
        let path = format!("/probe/{run}/{n}");
        n += 1;
        let body = BODY.replace("{PATH}", &path);
        let (http, url, outstanding, tally) = (
            http.clone(),
            url.clone(),
            outstanding.clone(),
            tally.clone(),
        );
        posts.spawn(async move {
            let sent_at = Instant::now();
            // Registered before the POST so a very fast pipeline cannot beat the bookkeeping.
            lock(&outstanding).insert(path.clone(), sent_at);
            lock(&tally).sent += 1;
            let response = http
                .post(&url)
                .header("content-type", "application/csp-report")
                .body(body)
                .send()
                .await;
            let accepted = matches!(&response, Ok(r) if r.status().is_success());
            if !accepted {
                lock(&outstanding).remove(&path);
                lock(&tally).refused += 1;
                match response {
                    Ok(r) => eprintln!("probe {path} refused: {}", r.status()),
                    Err(error) => eprintln!("probe {path} failed: {error}"),
                }
            }
        });
    }
    while posts.join_next().await.is_some() {}
    Ok(())
}

async fn clickhouse_query(
    http: &reqwest::Client,
    url: &str,
    query: String,
) -> anyhow::Result<String> {
    let response = http.post(url).body(query).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("clickhouse answered {status}: {}", text.trim());
    }
    Ok(text)
}

/// The maps are only touched for a few microseconds at a time; a poisoned lock means a task
/// panicked mid-update, and the figures would be wrong anyway.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
