//! What a run measured, as text or as one JSON object (for scripts).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{Args, Plan, Tally};

/// One watched process.
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    pub pid: u32,
    /// utime + stime spent during the run; `None` when `/proc` could not be read.
    pub cpu_seconds: Option<f64>,
    /// Peak `VmRSS` sampled during the run, KiB.
    pub peak_rss_kib: Option<u64>,
    /// `VmHWM` (peak over the process' life) at the end, KiB.
    pub hwm_rss_kib: Option<u64>,
}

/// The run's results.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub mode: &'static str,
    pub profile: &'static str,
    pub mean_body_bytes: f64,
    pub mean_reports_per_body: f64,
    pub concurrency: usize,
    /// Offered rate (open loop); `None` for closed loop.
    pub rate: Option<f64>,
    pub tenants: u64,
    pub client_ips: u64,
    pub elapsed_seconds: f64,
    /// Requests answered (any status) or failed in transport.
    pub requests: u64,
    pub requests_per_second: f64,
    /// Valid reports in the bodies answered 2xx.
    pub reports_2xx: u64,
    pub reports_per_second: f64,
    /// Sum of `accepted` in ingest's answers (published to Kafka; 0 against the baseline).
    pub reports_accepted: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<&'static str, u64>,
    /// Latency in milliseconds (open loop: from the intended send time).
    pub latency_ms: Latency,
    pub watched: Vec<WatchedSummary>,
    /// The load generator's own CPU seconds (it shares the machine).
    pub generator_cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// A watched process with its per-request cost.
#[derive(Debug, Clone, Serialize)]
pub struct WatchedSummary {
    #[serde(flatten)]
    pub process: Watched,
    pub cpu_us_per_request: Option<f64>,
    /// Per valid report answered 2xx.
    pub cpu_us_per_report: Option<f64>,
    pub cpu_cores_busy: Option<f64>,
}

impl Summary {
    pub(super) fn new(
        args: &Args,
        plan: &Plan,
        elapsed: Duration,
        concurrency: usize,
        tally: Tally,
        watched: Vec<Watched>,
        generator_cpu_seconds: Option<f64>,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let requests = tally.latency.len();
        let ms = |q: f64| tally.latency.value_at_quantile(q) as f64 / 1000.0;
        let per = |cpu: Option<f64>, n: u64| cpu.filter(|_| n > 0).map(|c| c * 1e6 / n as f64);
        let watched = watched
            .into_iter()
            .map(|w| WatchedSummary {
                cpu_us_per_request: per(w.cpu_seconds, requests),
                cpu_us_per_report: per(w.cpu_seconds, tally.reports_2xx),
                cpu_cores_busy: w.cpu_seconds.map(|c| c / seconds),
                process: w,
            })
            .collect();
        Self {
            target: plan.display_url.clone(),
            mode: plan.mode.as_str(),
            profile: args.profile.as_str(),
            mean_body_bytes: plan.mix.mean_bytes(),
            mean_reports_per_body: plan.mix.mean_reports(),
            concurrency,
            rate: plan.rate,
            tenants: args.tenants,
            client_ips: args.client_ips,
            elapsed_seconds: seconds,
            requests,
            requests_per_second: requests as f64 / seconds,
            reports_2xx: tally.reports_2xx,
            reports_per_second: tally.reports_2xx as f64 / seconds,
            reports_accepted: tally.reports_accepted,
            statuses: tally.statuses,
            transport_errors: tally.transport_errors,
            latency_ms: Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p99_9: ms(0.999),
                max: tally.latency.max() as f64 / 1000.0,
            },
            watched,
            generator_cpu_seconds,
        }
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let rate = self.rate.map_or("closed loop".to_owned(), |r| {
            format!("open loop at {r:.0}/s")
        });
        let _ = writeln!(out, "target            {}", self.target);
        let _ = writeln!(
            out,
            "load              {} mode, {rate}, concurrency {}, {} tenant(s), {} client IP(s)",
            self.mode, self.concurrency, self.tenants, self.client_ips
        );
        let _ = writeln!(
            out,
            "profile           {} (mean {:.0} bytes, {:.2} reports per body)",
            self.profile, self.mean_body_bytes, self.mean_reports_per_body
        );
        let _ = writeln!(out, "elapsed           {:.2} s", self.elapsed_seconds);
        let _ = writeln!(
            out,
            "requests          {} ({:.0}/s)",
            self.requests, self.requests_per_second
        );
        let _ = writeln!(
            out,
            "reports in 2xx    {} ({:.0}/s), accepted by ingest {}",
            self.reports_2xx, self.reports_per_second, self.reports_accepted
        );
        for (status, n) in &self.statuses {
            let _ = writeln!(out, "status {status}        {n}");
        }
        let errors: u64 = self.transport_errors.values().sum();
        let _ = writeln!(
            out,
            "transport errors  {errors} {:?}",
            self.transport_errors
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency ms        p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p99_9, l.max
        );
        for w in &self.watched {
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or("?".to_owned(), |v| format!("{v:.digits$}"))
            };
            let _ = writeln!(
                out,
                "pid {:<8}      cpu {} s ({} cores), {} cpu-us/request, {} cpu-us/report, peak rss {} MiB (hwm {} MiB)",
                w.process.pid,
                opt(w.process.cpu_seconds, 2),
                opt(w.cpu_cores_busy, 2),
                opt(w.cpu_us_per_request, 1),
                opt(w.cpu_us_per_report, 1),
                w.process.peak_rss_kib.map_or("?".to_owned(), |k| (k / 1024).to_string()),
                w.process.hwm_rss_kib.map_or("?".to_owned(), |k| (k / 1024).to_string()),
            );
        }
        if let Some(cpu) = self.generator_cpu_seconds {
            let _ = writeln!(out, "generator cpu     {cpu:.2} s");
        }
        out
    }
}
