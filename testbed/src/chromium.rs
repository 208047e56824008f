//! A real headless Chromium loading one URL, so browser-generated reports (CSP `report-uri`,
//! Reporting API) reach the server under test. The browser is killed (with its whole process
//! group) on drop or [`Chromium::stop`]: reports are only sent while it runs, so tests keep it
//! open while they poll for what they expect.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::process::ChildProcess;

/// Where Debian's `chromium` package installs the launcher.
const BINARY: &str = "/usr/bin/chromium";

/// The flags every run uses: headless, no sandbox (containers and root), no GPU, no background
/// traffic, and Chromium's short reporting delay (reports are uploaded within about a second
/// instead of a minute).
pub const BASE_FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--short-reporting-delay",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
];

/// How to run the browser.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accept any certificate (self-signed test servers over https).
    pub ignore_certificate_errors: bool,
    /// Extra command-line flags, appended after [`BASE_FLAGS`].
    pub extra_flags: Vec<String>,
}

/// A running headless Chromium, killed on drop.
#[derive(Debug)]
pub struct Chromium {
    // Field order matters: the browser is killed before its profile dir is removed.
    process: ChildProcess,
    profile: TempDir,
}

impl Chromium {
    /// Launch Chromium on `url`. `None` (after printing `skipping: ...`) when Chromium is missing
    /// or cannot start; panics instead when `CI=true`.
    pub fn launch(url: &str, options: &Options) -> Option<Self> {
        let binary = find_binary();
        if !binary.is_file() {
            return crate::unavailable(
                "chromium",
                format!("{} not found (apt-get install chromium)", binary.display()),
            );
        }
        let profile = match tempfile::Builder::new()
            .prefix("palisade-chromium-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(error) => return crate::unavailable("chromium", error),
        };
        let mut command = Command::new(&binary);
        command.args(BASE_FLAGS).arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ));
        if options.ignore_certificate_errors {
            command.arg("--ignore-certificate-errors");
        }
        command.args(&options.extra_flags).arg(url);
        let log = profile.path().join("chromium.log");
        match ChildProcess::spawn_group("chromium", command, &log) {
            Ok(process) => Some(Self { process, profile }),
            Err(error) => crate::unavailable("chromium", format!("{error:#}")),
        }
    }

    /// Whether the browser is still running (it should be until stopped).
    pub fn running(&mut self) -> bool {
        self.process.exited().is_none()
    }

    /// The last lines of the browser's stdout/stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The profile dir (`--user-data-dir`'s parent), removed on drop.
    pub fn profile_dir(&self) -> &std::path::Path {
        self.profile.path()
    }

    /// Kill the browser and its child processes and wait for it.
    pub fn stop(&mut self) {
        self.process.kill();
    }
}

/// `$PALISADE_CHROMIUM`, else `/usr/bin/chromium`.
fn find_binary() -> PathBuf {
    std::env::var_os("PALISADE_CHROMIUM").map_or_else(|| PathBuf::from(BINARY), PathBuf::from)
}
