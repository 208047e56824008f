//! `palisade-processor replay-dead-letters`: make a dead-letter topic recoverable once whatever
//! rejected its records is fixed.
//!
//! It reads the dead-letter topic (assigned directly, no consumer group, nothing committed) from
//! `--from-offset` (default: the beginning) until `--max-messages` letters were read or none
//! arrived for `--idle-ms`, and for each letter:
//! - an undecodable record (`reason` a decode failure: `corrupt`, `unsupported_version`, ...)
//!   is re-published to the reports topic with its original key (the processor decodes a record
//!   from its key and value only) and a `palisade-replayed-from` header
//!   (`topic/partition/offset` of the letter). Useful after deploying a processor that reads
//!   it (a newer message version); a record still undecodable is dead-lettered again.
//! - a row ClickHouse rejected (`rejected_by_clickhouse`: the value is the deduplicated,
//!   enriched row as JSON, not a Kafka message) is inserted into ClickHouse again, with its
//!   rollups refreshed. The row keeps its `row_id` and count, so replaying twice changes
//!   nothing (`ReplacingMergeTree`); re-publishing it to the reports topic could not work (it is
//!   not a report message) and would count its reports a second time.
//! - a letter with a `payload_truncated` header (cut to `--dead-letter-max-bytes`), or a row
//!   that does not parse, is skipped and counted.
//!
//! `--dry-run` reads and counts the same letters, and publishes and inserts nothing. The summary
//! goes to stdout, with the `--from-offset` to resume from.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::deadletter::{PAYLOAD_TRUNCATED_HEADER, REJECTED_BY_CLICKHOUSE};
use crate::row::ReportRow;
use crate::write::{Touched, WriteError, Writer};

/// Header added to every re-published record: the letter it came from.
pub const REPLAYED_FROM_HEADER: &str = "palisade-replayed-from";
/// Rejected rows inserted per request.
const ROWS_PER_INSERT: usize = 1000;

/// Flags of `replay-dead-letters`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplayArgs {
    /// Only read and count the letters (by reason and action); publish and insert nothing.
    /// Default off.
    #[arg(long)]
    pub dry_run: bool,

    /// Most dead letters read in this run, in records. Default 10000.
    #[arg(long, default_value = "10000")]
    pub max_messages: NonZeroUsize,

    /// Where to start in the dead-letter topic: `OFFSET` (every partition) or
    /// `PARTITION=OFFSET`, repeatable or comma-separated. Default: each partition's beginning.
    #[arg(long = "from-offset", value_delimiter = ',', value_parser = from_offset)]
    pub from_offsets: Vec<FromOffset>,

    /// Stop when no letter arrived for this long, in milliseconds (the end of the topic).
    /// Default 3000.
    #[arg(long = "idle-ms", default_value = "3000", value_parser = positive_millis)]
    pub idle: Duration,
}

/// One `--from-offset`: a partition's start (or every partition's, `partition: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromOffset {
    pub partition: Option<i32>,
    pub offset: i64,
}

fn from_offset(text: &str) -> Result<FromOffset, String> {
    let (partition, offset) = match text.split_once('=') {
        Some((partition, offset)) => (
            Some(
                partition
                    .trim()
                    .parse::<i32>()
                    .map_err(|e| format!("partition: {e}"))?,
            ),
            offset,
        ),
        None => (None, text),
    };
    let offset = offset
        .trim()
        .parse::<i64>()
        .map_err(|e| format!("offset: {e}"))?;
    if offset < 0 || partition.is_some_and(|p| p < 0) {
        return Err(format!(
            "expected OFFSET or PARTITION=OFFSET, non-negative, got {text:?}"
        ));
    }
    Ok(FromOffset { partition, offset })
}

fn positive_millis(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be greater than 0".to_owned()),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(e) => Err(e.to_string()),
    }
}

impl ReplayArgs {
    /// The start offset of `partition`: its own `--from-offset`, else the all-partitions one.
    fn start(&self, partition: i32) -> Offset {
        let own = self
            .from_offsets
            .iter()
            .find(|f| f.partition == Some(partition));
        let all = self.from_offsets.iter().find(|f| f.partition.is_none());
        own.or(all)
            .map_or(Offset::Beginning, |f| Offset::Offset(f.offset))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("kafka {operation} failed")]
    Kafka {
        operation: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("dead-letter topic {0} has no partitions (does it exist?)")]
    NoPartitions(String),
    #[error("re-inserting the rejected rows failed; nothing of this chunk is lost, run again")]
    Write(#[from] WriteError),
}

fn kafka(operation: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> ReplayError {
    move |source| ReplayError::Kafka { operation, source }
}

/// What one run did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub dry_run: bool,
    pub read: u64,
    /// Letters by reason label (bounded: the processor's reasons, else `other`).
    pub by_reason: BTreeMap<String, u64>,
    /// Undecodable records re-published to the reports topic.
    pub republished: u64,
    /// Rejected rows inserted into ClickHouse again, and the reports they count.
    pub rows_reinserted: u64,
    pub occurrences_reinserted: u64,
    /// Rows ClickHouse refused again (one by one): still in the dead-letter topic.
    pub rows_still_rejected: u64,
    /// Letters skipped: value truncated, or a row that does not parse.
    pub skipped_truncated: u64,
    pub skipped_unreadable: u64,
    /// Per partition, the offset after the last letter read: `--from-offset` to resume.
    pub next_offsets: BTreeMap<i32, i64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would be " } else { "" };
        writeln!(f, "dead letters read: {}", self.read)?;
        for (reason, n) in &self.by_reason {
            writeln!(f, "  reason {reason}: {n}")?;
        }
        writeln!(
            f,
            "records {verb}re-published to the reports topic: {}",
            self.republished
        )?;
        writeln!(
            f,
            "rows {verb}re-inserted into clickhouse: {} ({} reports)",
            self.rows_reinserted, self.occurrences_reinserted
        )?;
        writeln!(f, "rows refused again: {}", self.rows_still_rejected)?;
        writeln!(f, "skipped, value truncated: {}", self.skipped_truncated)?;
        writeln!(f, "skipped, unreadable row: {}", self.skipped_unreadable)?;
        let next: Vec<String> = self
            .next_offsets
            .iter()
            .map(|(p, o)| format!("{p}={o}"))
            .collect();
        writeln!(f, "resume with: --from-offset {}", next.join(","))
    }
}

/// Replay the dead-letter topic per `args`; see the module docs.
pub async fn replay(config: &Config, args: &ReplayArgs) -> Result<Summary, ReplayError> {
    let topic = config.dead_letter_topic.clone();
    let consumer: StreamConsumer = config
        .kafka_client_config()
        .set("bootstrap.servers", &config.kafka_brokers)
        // Required by librdkafka; nothing is committed and no group is joined (assign only).
        .set("group.id", format!("{}-replay", config.kafka_group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka("create consumer"))?;
    let producer: FutureProducer = config
        .kafka_client_config()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("client.id", "palisade-processor-replay")
        // tansu 0.6 loses idempotent-producer state on restart (see deadletter.rs).
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .create()
        .map_err(kafka("create producer"))?;
    let writer = Writer::new(&config.clickhouse_client(), config.writer())?;

    // A blocking call, once, in a one-shot command.
    let metadata = consumer
        .fetch_metadata(Some(&topic), config.dead_letter_timeout)
        .map_err(kafka("topic metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ReplayError::NoPartitions(topic));
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment
            .add_partition_offset(&topic, *partition, args.start(*partition))
            .map_err(kafka("assign"))?;
    }
    consumer.assign(&assignment).map_err(kafka("assign"))?;

    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let mut rows: Vec<ReportRow> = Vec::new();
    let mut last_arrival = Instant::now();
    while summary.read < args.max_messages.get() as u64 {
        let left = args.idle.saturating_sub(last_arrival.elapsed());
        if left.is_zero() {
            break;
        }
        let message = match tokio::time::timeout(left, consumer.recv()).await {
            Err(_idle) => break,
            Ok(Err(error)) => {
                tracing::warn!(%error, "dead-letter read failed, retrying");
                continue;
            }
            Ok(Ok(message)) => message,
        };
        last_arrival = Instant::now();
        summary.read += 1;
        summary
            .next_offsets
            .insert(message.partition(), message.offset() + 1);
        let header = |name: &str| {
            message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value.map(<[u8]>::to_vec))
            })
        };
        let reason = header("reason")
            .and_then(|r| String::from_utf8(r).ok())
            .filter(|r| is_known_reason(r))
            .unwrap_or_else(|| "other".to_owned());
        *summary.by_reason.entry(reason.clone()).or_default() += 1;
        if header(PAYLOAD_TRUNCATED_HEADER).is_some() {
            summary.skipped_truncated += 1;
            continue;
        }
        let payload = message.payload().unwrap_or_default();
        if reason == REJECTED_BY_CLICKHOUSE {
            match serde_json::from_slice::<ReportRow>(payload) {
                Ok(row) => {
                    summary.occurrences_reinserted += u64::from(row.occurrences);
                    rows.push(row);
                }
                Err(_) => summary.skipped_unreadable += 1,
            }
            if rows.len() >= ROWS_PER_INSERT {
                reinsert(&writer, &mut rows, &mut summary, args.dry_run).await?;
            }
            continue;
        }
        summary.republished += 1;
        if args.dry_run {
            continue;
        }
        let from = format!("{topic}/{}/{}", message.partition(), message.offset());
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: REPLAYED_FROM_HEADER,
            value: Some(from.as_bytes()),
        });
        let mut record = FutureRecord::<[u8], [u8]>::to(&config.kafka_topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        producer
            .send(record, config.dead_letter_timeout)
            .await
            .map_err(|(source, _)| ReplayError::Kafka {
                operation: "produce",
                source,
            })?;
    }
    reinsert(&writer, &mut rows, &mut summary, args.dry_run).await?;
    Ok(summary)
}

/// Insert `rows` (and refresh their rollups) unless `dry_run`; rows refused again are counted.
async fn reinsert(
    writer: &Writer,
    rows: &mut Vec<ReportRow>,
    summary: &mut Summary,
    dry_run: bool,
) -> Result<(), ReplayError> {
    if rows.is_empty() {
        return Ok(());
    }
    if dry_run {
        summary.rows_reinserted += rows.len() as u64;
        rows.clear();
        return Ok(());
    }
    let inserted = writer.insert_rows(rows).await?;
    let mut touched = Touched::default();
    let mut refused = inserted.rejected.iter().map(|r| r.index).peekable();
    for (index, row) in rows.iter().enumerate() {
        if refused.peek() == Some(&index) {
            refused.next();
            summary.occurrences_reinserted -= u64::from(row.occurrences);
        } else {
            touched.add(row.project_id, row.window_start);
        }
    }
    writer.refresh_rollups(&touched).await?;
    summary.rows_reinserted += inserted.rows as u64;
    summary.rows_still_rejected += inserted.rejected.len() as u64;
    rows.clear();
    Ok(())
}

/// The processor's own reason labels (decode failures and rejected rows).
fn is_known_reason(reason: &str) -> bool {
    reason == REJECTED_BY_CLICKHOUSE || crate::DecodeFailure::REASONS.contains(&reason)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_from_offsets() {
        assert_eq!(
            from_offset("12").unwrap(),
            FromOffset {
                partition: None,
                offset: 12
            }
        );
        assert_eq!(
            from_offset("3=40").unwrap(),
            FromOffset {
                partition: Some(3),
                offset: 40
            }
        );
        assert!(from_offset("-1").is_err());
        assert!(from_offset("a=1").is_err());
        let args = ReplayArgs {
            dry_run: true,
            max_messages: NonZeroUsize::MIN,
            from_offsets: vec![from_offset("5").unwrap(), from_offset("1=9").unwrap()],
            idle: Duration::from_secs(1),
        };
        assert_eq!(args.start(0), Offset::Offset(5));
        assert_eq!(args.start(1), Offset::Offset(9));
    }
}
