//! `palisade-ingest` and `palisade-processor` as child processes (so a test can SIGKILL or
//! SIGTERM them), their admin endpoints, and a resident-memory sampler.
//!
//! The binaries are the ones built next to the test executable (`target/<profile>/`), so the
//! debug suite runs debug binaries and `cargo test --release` release ones;
//! `PALISADE_INGEST_BIN` / `PALISADE_PROCESSOR_BIN` override them. `cargo test --workspace`
//! builds both (their crates have integration tests); for `cargo test -p e2e` alone, build
//! them first: `cargo build -p ingest -p processor`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed::process::ChildProcess;
use tokio_util::sync::CancellationToken;

/// Longest wait for a started binary's admin listener.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The binary `name` built next to this test executable, or `$env`; `None` (testbed's CI rule)
/// when it does not exist.
pub fn binary(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let path = exe.parent()?.parent()?.join(name);
    if !path.is_file() {
        return testbed::unavailable(
            name,
            format!(
                "{} not built (cargo build -p ingest -p processor, or set {env})",
                path.display()
            ),
        );
    }
    let built = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(bin), Some(test)) = (built(&path), built(&exe)) {
        if bin < test {
            eprintln!(
                "note: {} is older than this test binary; rebuild it if ingest or the processor \
                 changed (cargo build -p ingest -p processor)",
                path.display()
            );
        }
    }
    Some(path)
}

// Each test binary uses a different part of this module.
#[allow(unused_imports)]
pub use testbed::process::{http_get, rss_kib, signal};

/// The status of `GET {path}` on `port`, from a blocking thread; 0 while nothing answers.
pub async fn status_of(port: u16, path: &'static str) -> u16 {
    tokio::task::spawn_blocking(move || http_get(port, path).map_or(0, |(status, _)| status))
        .await
        .unwrap()
}

/// The sum of a metric's samples (all label sets) on `/metrics` of `port`; `None` while the
/// listener does not answer, `Some(0.0)` when the metric is not there yet.
pub async fn metric(port: u16, name: &'static str) -> Option<f64> {
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
        .await
        .unwrap()
        .ok()?;
    if status != 200 {
        return None;
    }
    let sum = body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(sum)
}

/// A temp dir for a child's log, kept after the test when `PALISADE_FAULT_KEEP_LOGS` is set
/// (its path is printed), so a failed run can be read afterwards.
fn log_dir(name: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("PALISADE_FAULT_KEEP_LOGS").is_some();
    let dir = tempfile::Builder::new()
        .prefix(&format!("palisade-{name}-"))
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("{name} log kept in {}", dir.path().display());
    }
    dir
}

/// A Palisade binary running as a child process, killed on drop.
pub struct Service {
    pub process: ChildProcess,
    pub admin_port: u16,
    /// The public port (ingest only; 0 for the processor).
    pub public_port: u16,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Start `palisade-ingest` for `brokers` / `topic` with the load's projects; `extra` flags
    /// are appended. Waits until `/healthz` answers (not `/readyz`: Kafka may be down on
    /// purpose). `None` when the binary is missing (testbed's CI rule).
    pub async fn ingest(brokers: &str, topic: &str, extra: &[&str]) -> Option<Self> {
        let binary = binary("palisade-ingest", "PALISADE_INGEST_BIN")?;
        let dir = log_dir("ingest");
        let projects = dir.path().join("projects.toml");
        std::fs::write(&projects, super::load::PROJECTS).unwrap();
        let public_port = testbed::free_port().unwrap();
        let admin_port = testbed::free_port().unwrap();
        let mut command = Command::new(binary);
        command
            .args(["--public-addr", &format!("127.0.0.1:{public_port}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .arg("--projects-file")
            .arg(&projects)
            .args(["--kafka-brokers", brokers, "--kafka-topic", topic])
            // The load comes from one address: per-IP limits are not under test here.
            .args(["--ip-rate-per-second", "1000000", "--ip-burst", "1000000"])
            // Nor the per-IP shares of connections and in-flight requests: while Kafka is down
            // the load holds up to its own cap (256) of requests open, all from 127.0.0.1.
            .args(["--max-connections-per-ip", "10000"])
            .args(["--max-in-flight-per-ip", "1024"])
            .args(["--max-in-flight-per-project", "1024"])
            .args(["--ready-timeout-ms", "1000"])
            .args(extra)
            .env("RUST_LOG", "info,librdkafka=warn");
        let service = Self::spawn("palisade-ingest", command, dir, admin_port, public_port);
        service.wait_healthy().await;
        Some(service)
    }

    /// Start `palisade-processor run` with `args` (the caller's flags) and a free admin port.
    /// `None` when the binary is missing (testbed's CI rule).
    pub async fn processor(args: &[String]) -> Option<Self> {
        let binary = binary("palisade-processor", "PALISADE_PROCESSOR_BIN")?;
        let dir = log_dir("processor");
        let admin_port = testbed::free_port().unwrap();
        let mut command = Command::new(binary);
        command
            .args(args)
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .env("RUST_LOG", "info,rdkafka=warn");
        let service = Self::spawn("palisade-processor", command, dir, admin_port, 0);
        service.wait_healthy().await;
        Some(service)
    }

    fn spawn(
        name: &str,
        command: Command,
        dir: tempfile::TempDir,
        admin_port: u16,
        public_port: u16,
    ) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let process = ChildProcess::spawn(name, command, &log).unwrap();
        Self {
            process,
            admin_port,
            public_port,
            _dir: dir,
        }
    }

    async fn wait_healthy(&self) {
        let started = Instant::now();
        while status_of(self.admin_port, "/healthz").await != 200 {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "{} not healthy within {START_TIMEOUT:?}:\n{}",
                self.process.log_path().display(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// `http://127.0.0.1:PORT` of ingest's public listener.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.public_port)
    }

    pub async fn ready(&self) -> u16 {
        status_of(self.admin_port, "/readyz").await
    }

    pub async fn metric(&self, name: &'static str) -> Option<f64> {
        metric(self.admin_port, name).await
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(testbed::process::LOG_TAIL_LINES)
    }

    /// Wait (bounded) until `/readyz` answers `want` (200 or 503).
    pub async fn wait_ready(&self, want: u16, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let status = self.ready().await;
            if status == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "/readyz is {status}, not {want}, after {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        signal(self.pid(), "-TERM");
        self.wait_exit(timeout).await
    }

    /// Wait (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.exited() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "did not exit within {timeout:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Samples the resident memory of the processes it watches every 200 ms, keeping the peak.
#[derive(Default)]
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl RssSampler {
    /// Sample `pid` until it exits or the sampler is dropped.
    pub fn watch(&self, pid: u32) {
        let (peak, samples, stop) = (
            Arc::clone(&self.peak_kib),
            Arc::clone(&self.samples),
            self.stop.clone(),
        );
        tokio::spawn(async move {
            while let Some(kib) = rss_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
    }

    /// The highest sample so far, in KiB (0 before the first).
    pub fn peak_kib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed)
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib() as f64 / 1024.0
    }

    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
