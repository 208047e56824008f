//! The live projects: the current [`Snapshot`] behind an `ArcSwap`, reloaded on SIGHUP and when
//! the file's mtime or size changes.
//!
//! A request loads the snapshot once and keeps it to the end, so a reload never changes the
//! rules under an in-flight request. A bad file keeps the previous snapshot (logged, counted).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{error_chain, ProjectsError, Snapshot};
use crate::metrics;

/// The live projects: a snapshot swapped atomically by the reloader.
#[derive(Debug)]
pub struct Projects {
    path: PathBuf,
    current: ArcSwap<Snapshot>,
}

/// What identifies a version of the file on disk.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Projects {
    /// Loads the file once; an error here is fatal (there is no previous snapshot to keep).
    pub fn load(path: &Path) -> Result<Self, ProjectsError> {
        let snapshot = read(path, None)?;
        metrics::projects_loaded(snapshot.len());
        Ok(Self {
            path: path.to_owned(),
            current: ArcSwap::from_pointee(snapshot),
        })
    }

    /// The current snapshot; keep it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Re-reads the file. On error the current snapshot stays.
    pub fn reload(&self) -> Result<(), ProjectsError> {
        let result = read(&self.path, Some(&self.current.load()));
        match result {
            Ok(snapshot) => {
                metrics::projects_reload("ok");
                metrics::projects_loaded(snapshot.len());
                tracing::info!(projects = snapshot.len(), "projects reloaded");
                self.current.store(Arc::new(snapshot));
                Ok(())
            }
            Err(error) => {
                metrics::projects_reload("error");
                tracing::error!(error = %error_chain(&error), path = %self.path.display(), "projects reload failed, keeping the previous projects");
                Err(error)
            }
        }
    }

    /// Reloads on SIGHUP and whenever the file's mtime or size changes (checked every `poll`),
    /// until `shutdown`.
    pub async fn watch(self: Arc<Self>, poll: Duration, shutdown: CancellationToken) {
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
            if forced || now != last {
                last = now;
                // Errors are logged and counted inside.
                let _ = self.reload();
            }
        }
    }
}

fn read(path: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, ProjectsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProjectsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Snapshot::from_toml(&text, previous)
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
        let projects = Projects::load(&path).unwrap();
        std::fs::write(&path, "not toml [").unwrap();
        assert!(projects.reload().is_err());
        assert_eq!(
            projects.snapshot().key("k1"),
            Some((1, super::super::KeyState::Active))
        );
    }
}
