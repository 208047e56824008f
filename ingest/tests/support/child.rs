//! ingest as a child process (the `palisade-ingest` binary of this package) on free loopback
//! ports, for tests that measure ingest's OWN memory (RSS, from `/proc/PID/status`) and socket
//! count, or that need more file descriptors than one process may hold for both ends of every
//! connection. Killed on drop.
//!
//! `PALISADE_INGEST_BIN` runs another build of the binary instead (e.g.
//! `target/release/palisade-ingest` for figures from an optimised build).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testbed::process::ChildProcess;
use tokio::task::JoinHandle;

/// A running `palisade-ingest` child process.
#[derive(Debug)]
pub struct ChildIngest {
    /// `http://127.0.0.1:PORT` of the public listener.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    pub public_addr: SocketAddr,
    process: ChildProcess,
    _dir: tempfile::TempDir,
}

impl ChildIngest {
    /// Starts the binary with `projects` as its projects file, Kafka at `brokers` and `extra`
    /// flags, and waits (at most 30 s) until `/healthz` answers.
    pub async fn start(projects: &str, brokers: &str, extra: &[&str]) -> ChildIngest {
        let dir = tempfile::tempdir().unwrap();
        let projects_path = dir.path().join("projects.toml");
        std::fs::write(&projects_path, projects).unwrap();
        let public_port = testbed::free_port().unwrap();
        let admin_port = testbed::free_port().unwrap();
        let public_addr: SocketAddr = format!("127.0.0.1:{public_port}").parse().unwrap();
        let admin_addr = format!("127.0.0.1:{admin_port}");
        let binary = std::env::var_os("PALISADE_INGEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_palisade-ingest").into());
        let mut command = Command::new(binary);
        command
            .arg("--public-addr")
            .arg(public_addr.to_string())
            .arg("--admin-addr")
            .arg(&admin_addr)
            .arg("--projects-file")
            .arg(&projects_path)
            .arg("--kafka-brokers")
            .arg(brokers)
            .args(extra)
            // Refusals log at debug: keep the log small under floods.
            .env("RUST_LOG", "warn");
        let log = dir.path().join("ingest.log");
        let process = ChildProcess::spawn("palisade-ingest", command, &log).unwrap();
        let child = ChildIngest {
            base: format!("http://{public_addr}"),
            admin: format!("http://{admin_addr}"),
            public_addr,
            process,
            _dir: dir,
        };
        let health = format!("{}/healthz", child.admin);
        let http = super::client();
        let started = std::time::Instant::now();
        loop {
            if let Ok(response) = http.get(&health).send().await {
                if response.status() == 200 {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ingest child did not become healthy: {}",
                child.process.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// The last `lines` lines of the child's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The value of a counter/gauge line on the child's `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        super::parse_metric(&super::scrape(&super::client(), &self.admin).await, series)
    }

    /// Memory figures of the child from `/proc/PID/status`.
    pub fn memory(&self) -> Memory {
        proc_memory(self.pid())
    }

    /// Open sockets of the child (`/proc/PID/fd` entries that are sockets): listeners, client
    /// connections, Kafka connections.
    pub fn open_sockets(&self) -> usize {
        proc_sockets(self.pid())
    }

    /// CPU time (user + system) the child used so far, from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> Duration {
        proc_cpu_time(self.pid())
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Current resident set (`VmRSS`).
    pub rss: u64,
    /// Peak resident set since start (`VmHWM`, the kernel's high-water mark).
    pub peak_rss: u64,
}

pub fn proc_memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            * 1024
    };
    Memory {
        rss: kib("VmRSS:"),
        peak_rss: kib("VmHWM:"),
    }
}

/// Open sockets of `pid` (`/proc/PID/fd` entries that are sockets), 0 once it is gone.
pub fn proc_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// utime + stime of `pid` (fields 14 and 15 of `/proc/PID/stat`, in clock ticks of 1/100 s,
/// the Linux `USER_HZ` on every mainstream architecture).
pub fn proc_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `after` starts at field 3 (state), so utime (14) is index 11 and stime (15) index 12.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// MiB with one decimal, for printing.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The highest values a [`PeakSampler`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peaks {
    /// Of the `/metrics` series.
    pub metric: u64,
    /// Of the process reading.
    pub probe: u64,
    pub samples: u64,
}

/// Samples a child ingest every `every` until [`PeakSampler::finish`]: one `/metrics` series
/// (a gauge) and one reading of the process (`probe(pid)`, such as [`proc_sockets`] or the
/// RSS), keeping the highest value of each.
#[derive(Debug)]
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Peaks>,
}

impl PeakSampler {
    pub fn start(
        ingest: &ChildIngest,
        series: &'static str,
        probe: fn(u32) -> u64,
        every: Duration,
    ) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (admin, pid, stopped) = (ingest.admin.clone(), ingest.pid(), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let http = super::client();
            let mut peaks = Peaks::default();
            while !stopped.load(Ordering::SeqCst) {
                let text = super::scrape(&http, &admin).await;
                peaks.metric = peaks.metric.max(super::parse_metric(&text, series) as u64);
                peaks.probe = peaks.probe.max(probe(pid));
                peaks.samples += 1;
                tokio::time::sleep(every).await;
            }
            peaks
        });
        PeakSampler { stop, task }
    }

    pub async fn finish(self) -> Peaks {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}
