//! The storage bound per tenant (issue 12) against a REAL ClickHouse 18.16: one run of the
//! retention job reads `project_storage` (what `palisade-api` writes) and trims a project over
//! its row cap to its newest rows, applies a project's stored retention days, leaves the other
//! projects alone, and counts what it did.
//!
//! Skipped (with `skipping: ...` on stderr) when clickhouse-server is not installed, except in CI.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use processor::migrate::{self, Topology};
use processor::retention::{self, RetentionConfig};
use processor::write::{Touched, Writer};
use testbed::clickhouse::ClickHouse;

mod common;

use common::report_row as row;

const DATABASE: &str = "palisade_storage_bound";
/// 2023-11-15 00:00:00 UTC.
const H0: u32 = 1_700_006_400;
const HOUR: u32 = 3600;
const DAY: u32 = 86_400;
const TODAY: u16 = (H0 / DAY) as u16;
/// Capped at 4 rows through `project_storage`.
const CAPPED: u64 = 7;
/// No stored bound: keeps everything (the default cap is off in the first run).
const UNTOUCHED: u64 = 8;
/// Keeps 5 days through `project_storage` (and 30 by `--project-retention`).
const SHORT_LIVED: u64 = 9;

async fn start() -> Option<(ClickHouse, clickhouse::Client)> {
    let server = ClickHouse::start().await?;
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_validation(false);
    Some((server, client))
}

async fn one(client: &clickhouse::Client, sql: &str) -> String {
    let rows = testbed::clickhouse::tsv(client, DATABASE, sql).await;
    assert_eq!(rows.len(), 1, "{sql} -> {rows:?}");
    rows[0].join("\t")
}

fn config(default_max_rows: u64) -> RetentionConfig {
    RetentionConfig {
        interval: Duration::from_secs(3600),
        days: 90,
        projects: vec![processor::config::ProjectRetention {
            project_id: SHORT_LIVED,
            days: NonZeroU32::new(30).expect("non-zero"),
        }],
        default_max_rows,
        max_projects: NonZeroUsize::new(100).expect("non-zero"),
        topology: Topology::SingleNode,
    }
}

async fn row_ids(client: &clickhouse::Client, project: u64) -> String {
    one(
        client,
        &format!(
            "SELECT groupArray(row_id) FROM (SELECT row_id FROM reports FINAL \
             WHERE project_id = {project} ORDER BY row_id)"
        ),
    )
    .await
}

async fn mutations_done(client: &clickhouse::Client) {
    testbed::wait::wait_for(
        "the retention mutations",
        Duration::from_secs(30),
        || async {
            let pending = one(
                client,
                &format!(
                "SELECT count() FROM system.mutations WHERE database = '{DATABASE}' AND is_done = 0"
            ),
            )
            .await;
            if pending == "0" {
                Ok(())
            } else {
                Err(format!("{pending} mutations pending"))
            }
        },
    )
    .await;
}

fn metric(name: &str) -> f64 {
    let text = testbed::metrics::handle().render();
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn one_run_trims_a_capped_project_and_applies_stored_retention() {
    let Some((_server, client)) = start().await else {
        return;
    };
    migrate::migrate(&client, DATABASE).await.expect("migrates");
    let writer: Writer = common::writer(&client, DATABASE, Duration::from_secs(30));
    let _ = testbed::metrics::handle(); // the recorder, before the job counts

    // CAPPED: 10 rows over 3 hours, two of them in the same window (the tie is broken by
    // row_id), and a re-emitted fuller version of row 1 (one row, two versions until merged).
    let mut rows = vec![
        row(1, CAPPED, H0, 1),
        row(2, CAPPED, H0 + 60, 1),
        row(3, CAPPED, H0 + 120, 1),
        row(4, CAPPED, H0 + HOUR, 1),
        row(5, CAPPED, H0 + HOUR + 60, 1),
        row(6, CAPPED, H0 + HOUR + 120, 1),
        row(7, CAPPED, H0 + HOUR + 120, 1),
        row(8, CAPPED, H0 + 2 * HOUR, 1),
        row(9, CAPPED, H0 + 2 * HOUR + 60, 1),
        row(10, CAPPED, H0 + 2 * HOUR + 120, 1),
    ];
    // UNTOUCHED: 10 rows, the same times.
    rows.extend((0..10).map(|i| row(100 + i, UNTOUCHED, H0 + (i as u32) * 600, 1)));
    // SHORT_LIVED: 2 rows 20 days old, 1 row 3 days old.
    rows.push(row(200, SHORT_LIVED, H0 - 20 * DAY, 1));
    rows.push(row(201, SHORT_LIVED, H0 - 20 * DAY + 60, 1));
    rows.push(row(202, SHORT_LIVED, H0 - 3 * DAY, 1));
    writer.insert_rows(&rows).await.expect("inserted");
    writer
        .insert_rows(&[row(1, CAPPED, H0, 5)])
        .await
        .expect("re-emitted");
    writer
        .refresh_rollups(&Touched::from_rows(&rows))
        .await
        .expect("rollups");
    assert_eq!(
        one(&client, "SELECT count() FROM reports WHERE project_id = 7").await,
        "11",
        "two versions of row 1 before merging"
    );

    // The bounds as `palisade-api` writes them (latest version wins): CAPPED keeps 4 rows,
    // SHORT_LIVED 5 days; an older version of CAPPED's bound (cap 1) is superseded.
    let storage = "INSERT INTO project_storage \
                   (project_id, retention_days, max_rows, changed_at, version) VALUES";
    client
        .clone()
        .with_database(DATABASE)
        .query_raw(&format!(
            "{storage} (7, 0, 1, now(), 1), (7, 0, 4, now(), 2), (9, 5, 0, now(), 1)"
        ))
        .execute()
        .await
        .expect("bounds stored");

    let trimmed_before = metric("processor_retention_rows_trimmed_total");
    retention::run_once(&writer, &config(0), TODAY).await;
    mutations_done(&client).await;

    // The 4 newest by (window_start, row_id): 10, 9, 8 and 7 (7 wins the tie with 6).
    assert_eq!(row_ids(&client, CAPPED).await, "[7,8,9,10]");
    assert_eq!(
        row_ids(&client, UNTOUCHED).await,
        "[100,101,102,103,104,105,106,107,108,109]"
    );
    // 5 stored days beat the 30 of --project-retention: the 20-day-old rows go.
    assert_eq!(row_ids(&client, SHORT_LIVED).await, "[202]");
    // CAPPED's rollups of the hours before the cut-off row's hour (H0) are gone; the hour of
    // the cut-off row (H0 + 1h, partly trimmed) and later hours stay.
    assert_eq!(
        one(
            &client,
            "SELECT groupArray(h) FROM (SELECT toUInt32(hour) - 1700006400 AS h \
             FROM rollup_hourly FINAL WHERE project_id = 7 ORDER BY h)"
        )
        .await,
        "[3600,7200]"
    );
    assert_eq!(
        one(
            &client,
            "SELECT count() FROM rollup_hourly FINAL WHERE project_id = 8"
        )
        .await,
        "2",
        "the untouched project's rollups stay"
    );
    // 10 distinct rows (not 11 versions) minus the cap of 4.
    assert_eq!(
        metric("processor_retention_rows_trimmed_total") - trimmed_before,
        6.0
    );

    // Within its cap, a second run changes nothing for CAPPED; the server default
    // (--project-max-rows 3) now caps UNTOUCHED, which has no bound of its own.
    retention::run_once(&writer, &config(3), TODAY).await;
    mutations_done(&client).await;
    assert_eq!(row_ids(&client, CAPPED).await, "[7,8,9,10]");
    assert_eq!(row_ids(&client, UNTOUCHED).await, "[107,108,109]");
    assert_eq!(
        metric("processor_retention_rows_trimmed_total") - trimmed_before,
        13.0
    );
}
