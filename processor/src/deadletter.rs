//! The dead-letter topic: records the processor cannot decode, and rows ClickHouse rejects
//! permanently, are produced there with the reason in headers, so nothing is dropped silently
//! and a partition never stops on a bad record.
//!
//! Headers: `reason` (a bounded label: a [`crate::DecodeFailure`] reason or
//! `rejected_by_clickhouse`), `detail` (human text, truncated to [`MAX_DETAIL_BYTES`]),
//! `source_topic`, `source_partition`, `source_offset` (decimal). The value is the original
//! payload, or, for a rejected row, the row as JSON; a row counts one or more messages of one
//! partition, so its `source_offset` is the first of them (whose fields the row shows) and a
//! `source_last_offset` header gives the last.
//!
//! The value is capped at `--dead-letter-max-bytes` (a record the broker would refuse as too
//! large would otherwise be retried forever): a longer one is cut to the cap and carries a
//! `payload_truncated` header with the original length in bytes (decimal). A truncated record
//! cannot be replayed; `palisade-processor replay-dead-letters` counts and skips it.
//!
//! [`DeadLetters::send`] tries once (bounded by `--dead-letter-timeout-ms`); the consume loop
//! backs off and pauses while deliveries fail (see `crate::run`).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Longest `detail` header, in bytes (cut on a character boundary).
pub const MAX_DETAIL_BYTES: usize = 1024;

/// Reason label of rows ClickHouse rejected permanently.
pub const REJECTED_BY_CLICKHOUSE: &str = "rejected_by_clickhouse";

/// Header of a dead letter whose value was cut to the cap: the original length in bytes.
pub const PAYLOAD_TRUNCATED_HEADER: &str = "payload_truncated";

/// One record for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: &'static str,
    pub detail: String,
    pub partition: i32,
    /// Offset of the source record (of a rejected row: its first message).
    pub offset: i64,
    /// Of a rejected row: the offset of its last message.
    pub last_offset: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("cannot create the dead-letter producer")]
    Create(#[source] KafkaError),
    #[error("dead-letter produce to {topic} failed")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Producer to the dead-letter topic.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    source_topic: String,
    timeout: Duration,
    max_payload: usize,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// A producer to `topic` for records of `source_topic`; `timeout` bounds one delivery,
    /// `max_payload` (bytes) the value. `base` holds extra librdkafka settings (TLS, SASL) that
    /// the producer's own override.
    pub fn new(
        mut base: ClientConfig,
        brokers: &str,
        topic: &str,
        source_topic: &str,
        timeout: Duration,
        max_payload: std::num::NonZeroUsize,
    ) -> Result<Self, DeadLetterError> {
        let producer = base
            .set("bootstrap.servers", brokers)
            .set("client.id", "palisade-processor-dead-letter")
            // tansu 0.6 loses idempotent-producer state on restart (see testbed::kafka).
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .create()
            .map_err(DeadLetterError::Create)?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            source_topic: source_topic.to_owned(),
            timeout,
            max_payload: max_payload.get(),
        })
    }

    /// Produce one record and wait for the broker's acknowledgement.
    pub async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let last_offset = letter.last_offset.map(|offset| offset.to_string());
        let mut headers = OwnedHeaders::new_with_capacity(6)
            .insert(header("reason", letter.reason.as_bytes()))
            .insert(header("detail", truncate(&letter.detail).as_bytes()))
            .insert(header("source_topic", self.source_topic.as_bytes()))
            .insert(header("source_partition", partition.as_bytes()))
            .insert(header("source_offset", offset.as_bytes()));
        if let Some(last) = &last_offset {
            headers = headers.insert(header("source_last_offset", last.as_bytes()));
        }
        let (payload, truncated) = cap_payload(&letter.payload, self.max_payload);
        let original_length = letter.payload.len().to_string();
        if truncated {
            headers = headers.insert(header(PAYLOAD_TRUNCATED_HEADER, original_length.as_bytes()));
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(source, _)| DeadLetterError::Produce {
                topic: self.topic.clone(),
                source,
            })
    }
}

/// `payload` cut to `max` bytes, and whether it was cut.
pub fn cap_payload(payload: &[u8], max: usize) -> (&[u8], bool) {
    if payload.len() <= max {
        (payload, false)
    } else {
        (&payload[..max], true)
    }
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a, &'a [u8]> {
    Header {
        key,
        value: Some(value),
    }
}

/// `detail` cut to [`MAX_DETAIL_BYTES`] on a character boundary.
pub fn truncate(detail: &str) -> &str {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_the_payload() {
        assert_eq!(cap_payload(b"abcdef", 6), (&b"abcdef"[..], false));
        assert_eq!(cap_payload(b"abcdef", 4), (&b"abcd"[..], true));
    }

    #[test]
    fn truncates_on_a_char_boundary() {
        assert_eq!(truncate("short"), "short");
        let long = "é".repeat(MAX_DETAIL_BYTES);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_DETAIL_BYTES && cut.len() >= MAX_DETAIL_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
