//! `palisade-load`: a bounded load generator for ingest, loopback only.
//!
//! POSTs real report bodies to an ingest endpoint from `--concurrency` workers until
//! `--duration-secs` or `--requests` is reached, then prints throughput, latency percentiles,
//! status counts and (with `--watch-pid`) the peak resident memory of the ingest process.
//! It refuses any target that is not a loopback address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

/// Load generator for Palisade ingest (loopback targets only).
#[derive(Debug, Parser)]
struct Args {
    /// Full endpoint URL including the key, e.g.
    /// `http://127.0.0.1:8080/api/1/security/?sentry_key=KEY`.
    #[arg(long)]
    url: String,
    /// Concurrent connections (workers). Default 32.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many seconds. Default 10, at most 600.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Stop after this many requests in total. Default 1,000,000.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Body kind: `legacy` (one CSP report per request), `batch` (Reporting API, 3 reports), `mixed`.
    #[arg(long, default_value = "mixed")]
    body: String,
    /// Vary the document path over this many values (`/page-0` .. `/page-{N-1}`), so reports
    /// have up to N distinct fingerprints instead of one flood. Default 1 (identical bodies).
    #[arg(long, default_value_t = 1)]
    distinct: usize,
    /// Sample the resident memory (VmRSS) of this process id every 100 ms and print the peak.
    #[arg(long)]
    watch_pid: Option<u32>,
}

#[derive(Debug, Default)]
struct Totals {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = reqwest::Url::parse(&args.url).context("invalid --url")?;
    ensure_loopback(&url)?;
    let duration = Duration::from_secs(args.duration_secs.min(600));
    let bodies: Vec<(&'static str, u64)> = match args.body.as_str() {
        "legacy" => vec![(benches::samples::LEGACY_CSP, 1)],
        "batch" => vec![(benches::samples::REPORTING_BATCH, 3)],
        "mixed" => vec![
            (benches::samples::LEGACY_CSP, 1),
            (benches::samples::REPORTING_BATCH, 3),
        ],
        other => bail!("unknown --body {other:?} (legacy, batch, mixed)"),
    };

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let reports = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;

    let watcher = args.watch_pid.map(|pid| {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let mut workers = Vec::with_capacity(args.concurrency);
    for worker in 0..args.concurrency {
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        let (histogram, totals) = (histogram.clone(), totals.clone());
        let (sent, reports, limit) = (sent.clone(), reports.clone(), args.requests);
        let distinct = args.distinct.max(1);
        workers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("static histogram bounds are valid");
            let mut local_totals = Totals::default();
            let mut i = worker;
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < limit {
                let (template, count) = bodies[i % bodies.len()];
                let body = if distinct > 1 {
                    template.replace(
                        "https://shop.example.com/",
                        &format!("https://shop.example.com/page-{}/", i % distinct),
                    )
                } else {
                    template.to_owned()
                };
                i += 1;
                let begin = Instant::now();
                let answer = client
                    .post(url.clone())
                    .header("content-type", "application/csp-report")
                    .body(body)
                    .send()
                    .await;
                match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        *local_totals.statuses.entry(status).or_default() += 1;
                        if (200..300).contains(&status) {
                            reports.fetch_add(count, Ordering::Relaxed);
                        }
                    }
                    Err(_) => local_totals.errors += 1,
                }
                let micros = u64::try_from(begin.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = local.record(micros.clamp(1, 60_000_000));
            }
            histogram
                .lock()
                .await
                .add(&local)
                .expect("same histogram bounds");
            let mut totals = totals.lock().await;
            for (status, n) in local_totals.statuses {
                *totals.statuses.entry(status).or_default() += n;
            }
            totals.errors += local_totals.errors;
        }));
    }
    for worker in workers {
        worker.await?;
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }

    let elapsed = started.elapsed().as_secs_f64();
    let histogram = histogram.lock().await;
    let totals = totals.lock().await;
    let requests = histogram.len();
    println!("target            {url}");
    println!(
        "elapsed           {elapsed:.2} s, concurrency {}",
        args.concurrency
    );
    println!(
        "requests          {requests} ({:.0}/s)",
        requests as f64 / elapsed
    );
    let accepted = reports.load(Ordering::Relaxed);
    println!(
        "reports accepted  {accepted} ({:.0}/s)",
        accepted as f64 / elapsed
    );
    for (status, n) in &totals.statuses {
        println!("status {status}        {n}");
    }
    println!("transport errors  {}", totals.errors);
    for q in [0.5, 0.9, 0.99, 0.999] {
        println!(
            "latency p{:<5}     {:.2} ms",
            q * 100.0,
            histogram.value_at_quantile(q) as f64 / 1000.0
        );
    }
    println!(
        "latency max       {:.2} ms",
        histogram.max() as f64 / 1000.0
    );
    if args.watch_pid.is_some() {
        println!(
            "peak rss          {} MiB",
            peak_rss.load(Ordering::Relaxed) / 1024
        );
    }
    Ok(())
}

/// Load tests only ever target this machine.
fn ensure_loopback(url: &reqwest::Url) -> anyhow::Result<()> {
    let host = url.host_str().context("--url has no host")?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing to load {host}: palisade-load only targets loopback addresses");
    }
    Ok(())
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
