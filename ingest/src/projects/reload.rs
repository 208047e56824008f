//! The live projects: the current [`Snapshot`] behind an `ArcSwap`, reloaded on SIGHUP and when
//! the file's mtime or size changes.
//!
//! A request loads the snapshot once and keeps it to the end, so a reload never changes the
//! rules under an in-flight request. A bad file keeps the previous snapshot (logged, counted).
//!
//! A file read while it is being written must not be applied: a prefix cut between two
//! projects, or before a project's `allowed_hosts`, is often valid TOML and would silently drop
//! rules. Two guards (README, "Projects file"): a changed file is read only once its mtime and
//! size stayed the same for `--projects-settle-ms`; and once a file ending with the
//! [`END_MARKER`](super::END_MARKER) line is in force, a file without it is refused as cut short
//! (counted as `result="incomplete"`) and retried at the next poll. The safe way to change the
//! file remains an atomic replace: write a temporary file in the same directory, then rename it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use schemas::error_chain;
use tokio_util::sync::CancellationToken;

use super::{ends_with_marker, ProjectsError, Snapshot};
use crate::metrics;
use crate::privacy::Salt;

/// The live projects: a snapshot swapped atomically by the reloader.
#[derive(Debug)]
pub struct Projects {
    path: PathBuf,
    current: ArcSwap<Snapshot>,
    /// The process-wide salt (`--ip-hash-salt-file`), for every reload.
    ip_salt: Option<Salt>,
}

/// What identifies a version of the file on disk.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Projects {
    /// Loads the file once; an error here is fatal (there is no previous snapshot to keep).
    /// `ip_salt` is the process-wide salt of projects hashing client IPs.
    pub fn load(path: &Path, ip_salt: Option<Salt>) -> Result<Self, ProjectsError> {
        let snapshot = read(path, None, ip_salt.as_ref())?;
        metrics::projects_loaded(snapshot.len());
        Ok(Self {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(snapshot),
            ip_salt,
        })
    }

    /// The current snapshot; keep it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Re-reads the file. On error the current snapshot stays.
    pub fn reload(&self) -> Result<(), ProjectsError> {
        let result = read(
            &self.path,
            Some(&self.current.load()),
            self.ip_salt.as_ref(),
        );
        match result {
            Ok(snapshot) => {
                metrics::projects_reload("ok");
                metrics::projects_loaded(snapshot.len());
                tracing::info!(projects = snapshot.len(), "projects reloaded");
                self.current.store(Arc::new(snapshot));
                Ok(())
            }
            Err(error) => {
                metrics::projects_reload(match error {
                    ProjectsError::Incomplete => "incomplete",
                    _ => "error",
                });
                tracing::error!(error = %error_chain(&error), path = %self.path.display(), "projects reload failed, keeping the previous projects");
                Err(error)
            }
        }
    }

    /// Reloads on SIGHUP and whenever the file's mtime or size changes (checked every `poll`)
    /// and then stayed the same for `settle`, until `shutdown`. A file refused as incomplete is
    /// tried again at the next poll.
    pub async fn watch(
        self: Arc<Self>,
        poll: Duration,
        settle: Duration,
        shutdown: CancellationToken,
    ) {
        let mut last = stamp(&self.path);
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hangup = hangup_signal();
        loop {
            let forced = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => false,
                Some(()) = recv_hangup(&mut hangup) => true,
            };
            let now = stamp(&self.path);
            if !(forced || now != last) {
                continue;
            }
            if !settle.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(settle) => {}
                }
                if stamp(&self.path) != now {
                    // Still being written: look again at the next tick.
                    continue;
                }
            }
            // Errors are logged and counted inside.
            match self.reload() {
                Err(ProjectsError::Incomplete) => {}
                _ => last = now,
            }
        }
    }
}

fn read(
    path: &Path,
    previous: Option<&Snapshot>,
    ip_salt: Option<&Salt>,
) -> Result<Snapshot, ProjectsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProjectsError::Read {
        path: path.to_owned(),
        source,
    })?;
    if previous.is_some_and(|p| p.ends_with_marker) && !ends_with_marker(&text) {
        return Err(ProjectsError::Incomplete);
    }
    Snapshot::from_toml_salted(&text, previous, ip_salt)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

async fn recv_hangup(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    let _ = hangup;
    std::future::pending().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[project]]
        id = 1
        name = "shop"
        quota = { per_second = 10, burst = 20 }
        keys = [{ public_key = "k1" }]
    "#;

    #[test]
    fn bad_reload_keeps_the_previous_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, GOOD).unwrap();
        let projects = Projects::load(&path, None).unwrap();
        std::fs::write(&path, "not toml [").unwrap();
        assert!(projects.reload().is_err());
        assert_eq!(
            projects.snapshot().key("k1"),
            Some((1, super::super::KeyState::Active))
        );
    }

    /// Regression (issue 10, item 12): a valid-TOML prefix of the file (cut before a project's
    /// `allowed_hosts`) replaced the rules in force.
    #[test]
    fn a_prefix_of_a_marked_file_is_refused() {
        let full = "[[project]]\nid = 1\nname = \"shop\"\nquota = { per_second = 10, burst = 20 }\nkeys = [{ public_key = \"k1\" }]\nallowed_hosts = [\"shop.example\"]\n# palisade:end\n";
        let cut = &full[..full.find("allowed_hosts").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, full).unwrap();
        let projects = Projects::load(&path, None).unwrap();
        std::fs::write(&path, cut).unwrap();
        let err = projects.reload().unwrap_err();
        assert!(matches!(err, ProjectsError::Incomplete), "{err}");
        assert_eq!(
            projects.snapshot().project(1).unwrap().allowed_hosts.len(),
            1,
            "the allow-list stays"
        );
        // The complete file applies; a whole file without the marker is refused too (drop the
        // marker only with a restart).
        std::fs::write(&path, full.replace("shop.example", "shop2.example")).unwrap();
        projects.reload().unwrap();
        std::fs::write(&path, GOOD).unwrap();
        assert!(matches!(projects.reload(), Err(ProjectsError::Incomplete)));
        // Files without the marker reload freely while the one in force has none.
        std::fs::write(&path, GOOD).unwrap();
        let projects = Projects::load(&path, None).unwrap();
        std::fs::write(&path, GOOD.replace("k1", "k9")).unwrap();
        projects.reload().unwrap();
        assert!(projects.snapshot().key("k9").is_some());
    }
}
