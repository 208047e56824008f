//! A child process whose stdout and stderr go to a log file, killed and reaped on drop.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context as _;

/// How many log lines [`ChildProcess::log_tail`] callers usually print on failure.
pub const LOG_TAIL_LINES: usize = 40;

/// A running child process. Dropping it kills it (SIGKILL) and waits for it, so a failing or
/// panicking test leaves nothing behind.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// The child leads its own process group and the whole group is killed (Chromium forks
    /// zygote, renderer and utility processes that outlive a killed parent for a while).
    group: bool,
}

impl ChildProcess {
    /// Spawn `command` with stdin closed and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        Self::spawn_inner(name, &mut command, log, false)
    }

    /// Like [`ChildProcess::spawn`], but the child leads a new process group that is killed as a
    /// whole on drop.
    pub fn spawn_group(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        command.process_group(0);
        Self::spawn_inner(name, &mut command, log, true)
    }

    fn spawn_inner(
        name: &str,
        command: &mut Command,
        log: &Path,
        group: bool,
    ) -> anyhow::Result<Self> {
        let stdout = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log file {}", log.display()))?;
        let stderr = stdout.try_clone().context("clone log file handle")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            group,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Path of the file receiving the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log (empty if it cannot be read).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// An error that names the process and carries its log tail.
    pub fn failure(&self, what: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {what}; last lines of {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    /// Kill the process (and its group) and wait for it to exit.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            if self.group {
                // No libc (unsafe is forbidden): `kill -KILL -- -PGID` signals the whole group.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", self.child.id())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET http://127.0.0.1:{port}{path}` -> (status, body), or an error while nothing listens. A
/// blocking HTTP/1.1 request (10 s read timeout) for admin endpoints in tests.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`); `None` once it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Send `signal` (`-TERM`, `-KILL`, `-STOP`, `-CONT`) to `pid` with the `kill` command (no
/// unsafe code, hence no libc). Panics when `kill` fails: for tests.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill {signal} {pid} failed"
    );
}
