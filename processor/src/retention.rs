//! The retention job: at start-up and then every `--retention-interval-secs`, drop the day
//! partitions older than `--retention-days` and delete older rows of projects with a shorter
//! `--project-retention`. Failures are logged and counted; the next run tries again.

use std::num::NonZeroU32;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::write::Writer;

/// Days since the Unix epoch (UTC) today.
pub fn today() -> u16 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u16::try_from(secs / 86_400).unwrap_or(u16::MAX)
}

/// Run the job until `stop` is cancelled. Does nothing when the interval is 0.
pub async fn run(writer: Writer, config: Config, stop: CancellationToken) {
    if config.retention_interval.is_zero() {
        return;
    }
    loop {
        run_once(&writer, &config, today()).await;
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(config.retention_interval) => {}
        }
    }
}

/// One pass for `today` (days since the epoch).
pub async fn run_once(writer: &Writer, config: &Config, today: u16) {
    // On a cluster the partitions of every shard's local tables (see `write::retention`).
    let topology = config.topology();
    if let Some(days) = NonZeroU32::new(config.retention_days) {
        match writer
            .drop_expired_partitions_on(&topology, days, today)
            .await
        {
            Ok(dropped) => metrics::retention_run("drop_partitions", true, dropped.len()),
            Err(error) => {
                metrics::retention_run("drop_partitions", false, 0);
                tracing::error!(%error, "retention: dropping expired partitions failed");
            }
        }
    }
    for project in &config.project_retention {
        let before = u32::from(today).saturating_sub(project.days.get());
        let before = u16::try_from(before).unwrap_or(0);
        match writer
            .delete_project_before_on(&topology, project.project_id, before)
            .await
        {
            Ok(()) => metrics::retention_run("delete_project", true, 1),
            Err(error) => {
                metrics::retention_run("delete_project", false, 0);
                tracing::error!(%error, project = project.project_id, "retention: deleting a project's old rows failed");
            }
        }
    }
}
