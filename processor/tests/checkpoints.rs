//! Commit points in ClickHouse (`processor_checkpoints`): looked up by the exact committed
//! offset, the latest write of an offset wins even before merges. Against a REAL ClickHouse.
#![allow(clippy::unwrap_used)]

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use processor::write::{Checkpoint, RetryPolicy, Writer, WriterConfig};
use testbed::clickhouse::ClickHouse;

fn point(offset: i64, metadata: &str, version: u64) -> Checkpoint {
    Checkpoint {
        consumer_group: "g".into(),
        topic: "t".into(),
        kafka_partition: 3,
        kafka_offset: offset,
        metadata: metadata.into(),
        written_at: 1_700_000_000,
        version,
    }
}

#[tokio::test]
async fn the_latest_point_of_the_exact_offset_is_read() {
    let Some(server) = ClickHouse::start().await else {
        return;
    };
    let client = clickhouse::Client::default()
        .with_url(server.http_url())
        .with_validation(false);
    processor::migrate::migrate(&client, "cp").await.unwrap();
    let writer = Writer::new(
        &client,
        WriterConfig {
            database: "cp".into(),
            retry: RetryPolicy {
                max_attempts: NonZeroU32::new(2).unwrap(),
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(10),
            },
            attempt_timeout: Duration::from_secs(10),
            rollup_groups_per_statement: NonZeroUsize::new(10).unwrap(),
        },
    )
    .unwrap();
    // Same offset twice (the horizon moved, the oldest open window did not), in separate
    // inserts (parts), the newer one first: the version decides, not the insert order.
    writer
        .write_checkpoints(&[point(100, "newer", 2_000)])
        .await
        .unwrap();
    writer
        .write_checkpoints(&[point(100, "older", 1_000), point(90, "before", 500)])
        .await
        .unwrap();
    let read = |offset| writer.read_checkpoint("g", "t", 3, offset);
    assert_eq!(read(100).await.unwrap().as_deref(), Some("newer"));
    assert_eq!(read(90).await.unwrap().as_deref(), Some("before"));
    assert_eq!(read(101).await.unwrap(), None, "only the exact offset");
    assert_eq!(
        writer.read_checkpoint("other", "t", 3, 100).await.unwrap(),
        None,
        "per consumer group"
    );
}
