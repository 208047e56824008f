//! Publishing reports to Kafka with rdkafka: idempotent, `acks=all`, compressed, keyed.
//!
//! The edge answers 2xx only after [`Publisher::publish`] returned `Ok`, i.e. after Kafka
//! acknowledged every report of the request (`acks=all`). Nothing here waits for queue space:
//! a full producer queue is refused at once ([`PublishError::QueueFull`]) so the edge can answer
//! 503 and the browser retries later, instead of piling up requests in memory.
//!
//! Every wait for an acknowledgement is bounded by `--kafka-message-timeout-ms`: librdkafka
//! does not time out a message already sent to a broker whose connection went silent (an
//! idempotent producer keeps it in flight), so the edge stops waiting itself and answers 503.
//!
//! The producer is replaced by a fresh one (new producer id) when librdkafka reports it fenced
//! or failed: an idempotent producer whose message timed out in flight bumps its epoch
//! (KIP-360), which Apache Kafka accepts but some Kafka-compatible brokers (tansu 0.6) answer
//! with `PRODUCER_FENCED` for every later message. Without the replacement ingest would answer
//! 503 for good while looking healthy.
//!
//! Acknowledgements are counted per request, not per message: every message of one
//! [`Publisher::publish`] call carries the same [`Pending`] state as its delivery opaque, and
//! librdkafka's delivery callback (on the producer's polling thread) counts it down, so a request
//! costs one allocation and one wake-up however many reports it holds (rdkafka's
//! `FutureProducer` allocates a oneshot channel and a boxed sender per message).
//!
//! Delivery is at-least-once: when a request is refused after some of its reports were already
//! enqueued (queue full half-way through a batch, or one report timing out), those reports may
//! still reach Kafka, and the browser's retry produces them again. The processor deduplicates.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

/// Kafka header carrying [`schemas::MESSAGE_VERSION`] as ASCII decimal, so consumers can route
/// or skip messages without parsing the payload.
pub const MESSAGE_VERSION_HEADER: &str = "palisade-message-version";

/// Kafka header naming the payload's layout (`json` or `binary`, [`schemas::MessageFormat`]).
/// Consumers do not need it (the first byte tells them, see `schemas::binary`); it is there for
/// people and tools reading the topic (`kcat -f '%h'`).
pub const MESSAGE_FORMAT_HEADER: &str = "palisade-message-format";

/// Kafka settings (flattened into the binary's `Config`).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(
        long = "kafka-brokers",
        env = "PALISADE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Topic the reports are published to.
    #[arg(
        long = "kafka-topic",
        env = "PALISADE_KAFKA_TOPIC",
        default_value = "palisade-reports"
    )]
    pub topic: String,
    /// Longest a report may wait for Kafka's acknowledgement before the request is answered 503
    /// (librdkafka `message.timeout.ms`), in milliseconds.
    #[arg(
        long = "kafka-message-timeout-ms",
        env = "PALISADE_KAFKA_MESSAGE_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub message_timeout_ms: u64,
    /// Most reports waiting in the producer queue (librdkafka `queue.buffering.max.messages`);
    /// past it requests are answered 503.
    #[arg(
        long = "kafka-queue-max-messages",
        env = "PALISADE_KAFKA_QUEUE_MAX_MESSAGES",
        default_value_t = 100_000
    )]
    pub queue_max_messages: usize,
    /// How long librdkafka waits to fill a batch before sending it (`linger.ms`), in
    /// milliseconds: every request waits for its acknowledgement, so this adds to latency, but
    /// a non-zero value lets concurrent requests share one produce request (less CPU per report
    /// in ingest and the broker). Default 5.
    #[arg(
        long = "kafka-linger-ms",
        env = "PALISADE_KAFKA_LINGER_MS",
        default_value_t = 5
    )]
    pub linger_ms: u64,
    /// Compression codec for produced batches (`none`, `gzip`, `snappy`, `lz4`; `zstd` is not
    /// compiled in).
    #[arg(
        long = "kafka-compression",
        env = "PALISADE_KAFKA_COMPRESSION",
        default_value = "lz4"
    )]
    pub compression: String,
    /// Extra librdkafka properties as `key=value`, repeatable or comma-separated, for what
    /// Palisade has no flag for: TLS and SASL to a secured cluster (`security.protocol=SASL_SSL`,
    /// `sasl.mechanism=SCRAM-SHA-512`, `sasl.username=...`, `ssl.ca.location=...`). Palisade's own
    /// settings (idempotence, `acks=all`, the flags above) are applied after them and win.
    /// Default: none.
    #[arg(
        long = "kafka-property",
        env = "PALISADE_KAFKA_PROPERTIES",
        value_delimiter = ',',
        value_parser = parse_property
    )]
    pub properties: Vec<(String, String)>,
    /// Layout of the reports written to Kafka: `binary` (`schemas::binary`: about half the
    /// bytes of JSON, a quarter of ingest's encoding work and several times cheaper for the
    /// processor to decode; every processor reads both) or `json` (for other consumers of the
    /// topic that read only JSON). Default binary.
    #[arg(
        long = "kafka-message-format",
        env = "PALISADE_KAFKA_MESSAGE_FORMAT",
        default_value = "binary"
    )]
    pub message_format: schemas::MessageFormat,
}

/// Parses one `key=value` librdkafka property.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

impl KafkaConfig {
    /// The librdkafka producer configuration these settings stand for.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "palisade-ingest")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            )
            .set("linger.ms", self.linger_ms.to_string())
            // Same key -> same partition as the Java client, so any producer of this topic agrees.
            .set("partitioner", "murmur2_random");
        config
    }
}

/// One report ready to be produced.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Partitioning key: the hex dedup key, so reports deduplicated together share a partition.
    pub key: String,
    /// The encoded `schemas::ReportMessage`.
    pub payload: Vec<u8>,
}

/// Why a publish failed. The edge answers 503 with `Retry-After` for every variant but
/// [`PublishError::MessageTooLarge`] (413: no retry can make the report smaller).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A report's message is over the producer's (or the broker's) `message.max.bytes`: a body
    /// under `--max-body-bytes` can still hold one string of about 1 MB.
    #[error("a report is too large for one kafka message")]
    MessageTooLarge(#[source] rdkafka::error::KafkaError),
    #[error("kafka producer queue is full")]
    QueueFull,
    #[error("kafka did not acknowledge in time")]
    Timeout,
    #[error("kafka is unavailable")]
    Unavailable(#[source] rdkafka::error::KafkaError),
    #[error("kafka producer could not be created")]
    Config(#[source] rdkafka::error::KafkaError),
}

impl PublishError {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MessageTooLarge(_) => "message_too_large",
            Self::QueueFull => "kafka_queue_full",
            Self::Timeout => "kafka_timeout",
            Self::Unavailable(_) => "kafka_unavailable",
            Self::Config(_) => "kafka_config",
        }
    }

    /// Classify an error from enqueueing, delivery or flushing.
    fn from_kafka(error: KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => Self::QueueFull,
            // librdkafka's own check at enqueue, or the broker's answer in a delivery report.
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => Self::MessageTooLarge(error),
            Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::OperationTimedOut) => {
                Self::Timeout
            }
            _ => Self::Unavailable(error),
        }
    }
}

/// What librdkafka still owes one [`Publisher::publish`] call: one delivery report per message.
/// Shared (as the delivery opaque) by every message of the call.
#[derive(Debug)]
struct Pending {
    /// Messages whose delivery report has not come yet.
    remaining: AtomicUsize,
    /// The first delivery error reported (the request fails on it, without waiting for the rest).
    failure: Mutex<Option<KafkaError>>,
    /// Wakes the request once `remaining` reached 0 or a failure was recorded.
    done: tokio::sync::Notify,
}

impl Pending {
    fn new(messages: usize) -> Self {
        Self {
            remaining: AtomicUsize::new(messages),
            failure: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        }
    }

    /// One message's delivery report (on librdkafka's polling thread).
    fn report(&self, error: Option<&KafkaError>) {
        if let Some(error) = error {
            let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            failure.get_or_insert_with(|| error.clone());
            drop(failure);
            self.done.notify_one();
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// `Some` once every message was acknowledged (`Ok`) or one failed (its error).
    fn outcome(&self) -> Option<Result<(), KafkaError>> {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(error) = failure.as_ref() {
            return Some(Err(error.clone()));
        }
        (self.remaining.load(Ordering::Acquire) == 0).then_some(Ok(()))
    }

    /// Waits for [`Pending::outcome`]. `notify_one` keeps a permit when nobody waits yet, so a
    /// report between the check and the wait is not missed.
    async fn wait(&self) -> Result<(), KafkaError> {
        loop {
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            self.done.notified().await;
        }
    }
}

/// The producer's context: routes each delivery report to its request's [`Pending`].
#[derive(Debug)]
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        pending.report(result.as_ref().err().map(|(error, _message)| error));
    }
}

/// The librdkafka producer with its polling thread (which runs the delivery callbacks).
type KafkaProducer = ThreadedProducer<Deliveries>;

/// A cheap-to-clone handle on the Kafka producer.
///
/// Dropping the last handle purges whatever librdkafka still holds (rdkafka's `Drop`): call
/// [`Publisher::flush`] first on shutdown.
#[derive(Clone)]
pub struct Publisher {
    /// The current producer and its generation; replaced when fenced (see the module docs).
    producer: Arc<RwLock<(u64, Arc<KafkaProducer>)>>,
    /// Generations created so far, to replace a fenced producer once, not once per request.
    generation: Arc<AtomicU64>,
    config: Arc<ClientConfig>,
    topic: Arc<str>,
    /// [`MESSAGE_VERSION_HEADER`]'s value, formatted once.
    version: Arc<str>,
    /// How reports are encoded (the caller encodes; [`MESSAGE_FORMAT_HEADER`] says which).
    format: schemas::MessageFormat,
    /// Longest wait for the acknowledgements of one request (`message_timeout_ms`).
    delivery_timeout: Duration,
}

/// A new producer (and its polling thread) with `config`.
fn create(config: &ClientConfig) -> Result<Arc<KafkaProducer>, KafkaError> {
    KafkaProducer::from_config_and_context(config, Deliveries).map(Arc::new)
}

/// Whether `error` says the producer itself is unusable (fenced, or a fatal idempotence error),
/// so only a new producer helps.
fn is_fenced(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::Fatal
        )
    )
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Create the producer (does not wait for the broker).
    pub fn new(config: &KafkaConfig) -> Result<Self, PublishError> {
        let client_config = config.client_config();
        let producer = create(&client_config).map_err(PublishError::Config)?;
        Ok(Self {
            producer: Arc::new(RwLock::new((0, producer))),
            generation: Arc::new(AtomicU64::new(0)),
            config: Arc::new(client_config),
            topic: Arc::from(config.topic.as_str()),
            version: Arc::from(schemas::MESSAGE_VERSION.to_string()),
            format: config.message_format,
            delivery_timeout: Duration::from_millis(config.message_timeout_ms),
        })
    }

    /// The current producer (a cheap clone) and its generation.
    fn current(&self) -> (u64, Arc<KafkaProducer>) {
        let guard = self
            .producer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (guard.0, Arc::clone(&guard.1))
    }

    /// Replace producer `generation` by a new one, unless another request already did. Messages
    /// still held by the old producer fail (their requests answer 503) once its last handle is
    /// dropped.
    fn replace(&self, generation: u64, why: &str) {
        let mut guard = self
            .producer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.0 != generation {
            return;
        }
        match create(&self.config) {
            Ok(producer) => {
                let next = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *guard = (next, producer);
                crate::metrics::kafka_producer_restart();
                tracing::warn!(why, generation = next, "kafka producer replaced");
            }
            Err(error) => {
                tracing::error!(%error, why, "kafka producer could not be replaced");
            }
        }
    }

    /// The layout reports are to be encoded in (`--kafka-message-format`).
    pub fn message_format(&self) -> schemas::MessageFormat {
        self.format
    }

    /// The topic reports are published to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Enqueue every message, then wait until Kafka acknowledged all of them. `Ok` only when every
    /// message was acknowledged.
    ///
    /// Never waits for queue space: a full queue is [`PublishError::QueueFull`] at once. A
    /// delivery not acknowledged within `message_timeout_ms` is [`PublishError::Timeout`].
    pub async fn publish(&self, messages: Vec<OutgoingMessage>) -> Result<(), PublishError> {
        if messages.is_empty() {
            return Ok(());
        }
        let (generation, producer) = self.current();
        // Counted down by the delivery callback; sized before the first send, so an early
        // report cannot see zero while messages are still to be enqueued.
        let pending = Arc::new(Pending::new(messages.len()));
        for message in &messages {
            let record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(&pending))
                .key(message.key.as_bytes())
                .payload(message.payload.as_slice())
                .headers(self.headers());
            producer
                .send(record)
                .map_err(|(error, _record)| self.failed(generation, error))?;
        }
        drop(producer);
        // librdkafka copied the messages (`RD_KAFKA_MSG_F_COPY`): free them while waiting.
        drop(messages);
        match tokio::time::timeout(self.delivery_timeout, pending.wait()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.failed(generation, error)),
            Err(_elapsed) => Err(PublishError::Timeout),
        }
    }

    /// The headers of one record ([`MESSAGE_VERSION_HEADER`], [`MESSAGE_FORMAT_HEADER`]). Built
    /// per record: librdkafka takes ownership of them, and building costs the same as copying.
    fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: MESSAGE_VERSION_HEADER,
                value: Some(self.version.as_bytes()),
            })
            .insert(Header {
                key: MESSAGE_FORMAT_HEADER,
                value: Some(self.format.as_str().as_bytes()),
            })
    }

    /// Classify a failure, replacing the producer first when it is fenced.
    fn failed(&self, generation: u64, error: KafkaError) -> PublishError {
        if is_fenced(&error) {
            self.replace(generation, "fenced");
        }
        PublishError::from_kafka(error)
    }

    /// Whether the cluster answers a metadata request for the topic within `timeout`, and the
    /// topic has at least one partition with a leader.
    pub async fn ready(&self, timeout: Duration) -> bool {
        // An idempotent producer that hit a fatal error (e.g. a sequence gap, or fenced)
        // refuses every message from then on: replace it and report not ready this time.
        let (generation, producer) = self.current();
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::error!(code = %code, reason, "kafka producer has a fatal error");
            self.replace(generation, "fatal error");
            return false;
        }
        let topic = Arc::clone(&self.topic);
        // `fetch_metadata` blocks the calling thread until the broker answers or `timeout`.
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(timeout))
        })
        .await;
        let Ok(Ok(metadata)) = metadata else {
            return false;
        };
        metadata.topics().iter().any(|topic| {
            topic.name() == &*self.topic
                && topic.error().is_none()
                && topic
                    .partitions()
                    .iter()
                    .any(|partition| partition.error().is_none() && partition.leader() >= 0)
        })
    }

    /// Messages enqueued but not yet acknowledged, plus librdkafka requests and callbacks still
    /// in flight (`rd_kafka_outq_len`), for the queue-depth gauge.
    pub fn queue_depth(&self) -> usize {
        usize::try_from(self.current().1.in_flight_count()).unwrap_or(0)
    }

    /// Wait until every enqueued message is delivered or `timeout` passes (shutdown). Blocks the
    /// calling thread: call it from `spawn_blocking` or after the runtime's work is done.
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.current()
            .1
            .flush(Timeout::After(timeout))
            .map_err(PublishError::from_kafka)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(brokers: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_owned(),
            topic: "palisade-test".to_owned(),
            message_timeout_ms: 1_000,
            queue_max_messages: 1,
            linger_ms: 5,
            compression: "lz4".to_owned(),
            properties: Vec::new(),
            message_format: schemas::MessageFormat::Json,
        }
    }

    #[test]
    fn extra_properties_cannot_weaken_delivery() {
        let mut kafka = config("127.0.0.1:1");
        kafka.properties = vec![
            ("acks".to_owned(), "0".to_owned()),
            ("security.protocol".to_owned(), "plaintext".to_owned()),
        ];
        let client = kafka.client_config();
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("security.protocol"), Some("plaintext"));
        assert_eq!(
            parse_property(" sasl.username = u "),
            Ok(("sasl.username".to_owned(), "u".to_owned()))
        );
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }

    fn message(key: &str) -> OutgoingMessage {
        OutgoingMessage {
            key: key.to_owned(),
            payload: b"{}".to_vec(),
        }
    }

    /// A closed loopback port: bound then released, so nothing listens there.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        listener
            .local_addr()
            .expect("bound socket has an address")
            .port()
    }

    // Guards the per-request delivery count: `Ok` only after the last message's report, a
    // failure at once, and a report that comes before the wait is not missed.
    #[tokio::test]
    async fn pending_counts_every_delivery_and_fails_on_the_first_error() {
        let pending = Arc::new(Pending::new(3));
        pending.report(None);
        pending.report(None);
        assert!(
            pending.outcome().is_none(),
            "one message still unacknowledged"
        );
        let reporter = {
            let pending = Arc::clone(&pending);
            std::thread::spawn(move || {
                // Let the request reach its wait first: the report must wake it, not precede it.
                std::thread::sleep(Duration::from_millis(200));
                pending.report(None);
            })
        };
        tokio::time::timeout(Duration::from_secs(5), pending.wait())
            .await
            .expect("the last report wakes the request")
            .expect("every message acknowledged");
        reporter.join().expect("reporter thread");

        let failing = Pending::new(3);
        failing.report(None);
        failing.report(Some(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )));
        let outcome = tokio::time::timeout(Duration::from_secs(5), failing.wait())
            .await
            .expect("a failure wakes the request without waiting for the rest");
        assert!(
            matches!(
                outcome,
                Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut
                ))
            ),
            "{outcome:?}"
        );
        // A later success does not hide the failure.
        failing.report(None);
        assert!(matches!(failing.outcome(), Some(Err(_))));
    }

    #[test]
    fn errors_are_classified_by_librdkafka_code() {
        let classify = |code| PublishError::from_kafka(KafkaError::MessageProduction(code));
        assert!(matches!(
            classify(RDKafkaErrorCode::QueueFull),
            PublishError::QueueFull
        ));
        assert!(matches!(
            classify(RDKafkaErrorCode::MessageTimedOut),
            PublishError::Timeout
        ));
        assert!(matches!(
            classify(RDKafkaErrorCode::UnknownTopicOrPartition),
            PublishError::Unavailable(_)
        ));
        assert!(matches!(
            classify(RDKafkaErrorCode::MessageSizeTooLarge),
            PublishError::MessageTooLarge(_)
        ));
        assert!(matches!(
            PublishError::from_kafka(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
            PublishError::Timeout
        ));
    }

    #[test]
    fn unknown_compression_is_a_config_error() {
        let mut config = config("127.0.0.1:9");
        config.compression = "brotli".to_owned();
        let error = Publisher::new(&config).expect_err("brotli is not a librdkafka codec");
        assert_eq!(error.reason(), "kafka_config");
    }

    // Guards the back-pressure contract: a full queue is refused at once, never awaited.
    #[tokio::test]
    async fn full_queue_is_refused_immediately() {
        let publisher = Publisher::new(&config(&format!("127.0.0.1:{}", closed_port())))
            .expect("valid producer config");
        let started = std::time::Instant::now();
        let result = publisher.publish(vec![message("a"), message("b")]).await;
        assert!(matches!(result, Err(PublishError::QueueFull)), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        // The first message stays queued until its timeout: it is counted as in flight.
        // (librdkafka's out-queue length also counts protocol requests and callbacks in flight,
        // e.g. the idempotent producer's id request, so it can be more than 1 here: seen 4.)
        assert!(publisher.queue_depth() >= 1, "{}", publisher.queue_depth());
    }

    #[tokio::test]
    async fn unreachable_broker_times_out_and_is_not_ready() {
        let publisher = Publisher::new(&config(&format!("127.0.0.1:{}", closed_port())))
            .expect("valid producer config");
        let result = publisher.publish(vec![message("a")]).await;
        assert!(matches!(result, Err(PublishError::Timeout)), "{result:?}");
        assert!(!publisher.ready(Duration::from_millis(300)).await);
        // Our wait and librdkafka's `message.timeout.ms` end at about the same time, but
        // librdkafka scans for timed-out messages only about once a second: the message leaves
        // its queue shortly after, never stays.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while publisher.queue_depth() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the timed-out message is still queued"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(publisher.flush(Duration::from_millis(100)).is_ok());
    }
}
