//! The Kafka side of the loop: a group consumer on the reports topic that never commits on its
//! own, forwards rebalances to the loop, and commits offsets with their dedup metadata.
//!
//! Rebalance events: librdkafka runs the rebalance callbacks inside [`Consumer::recv`] (the
//! StreamConsumer polls its queue there), so an `Assigned` event is always queued before the
//! first record of a newly assigned partition is returned. The loop drains [`Consumer::events`]
//! after every `recv` and before handling the record, which is what makes `dedup.resume` happen
//! before any record of the partition is observed. The channel is bounded by
//! [`EVENT_QUEUE`]: at most one rebalance happens per `recv`, so it cannot fill while the loop
//! drains it; if it ever did, the event would be logged as an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::dedup::CommitPoint;
use crate::group::GroupView;

/// Capacity of the rebalance event channel (see the module docs for why it is enough).
pub const EVENT_QUEUE: usize = 16;
/// Longest wait, on a rejoin, for background lookups to let go of the old consumer.
const REJOIN_CLOSE_WAIT: Duration = Duration::from_secs(30);
/// Least time between two consumer lag measurements.
pub const LAG_INTERVAL: Duration = Duration::from_secs(10);

/// A change of this consumer's partitions of the reports topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// One record, copied out of librdkafka's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("cannot create the kafka consumer")]
    Create(#[source] KafkaError),
    #[error("cannot subscribe to {topic}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("kafka {operation} failed")]
    Kafka {
        operation: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("kafka {0} task panicked")]
    Panicked(&'static str),
}

/// Forwards rebalances of `topic` to the loop.
#[derive(Debug)]
pub struct RebalanceContext {
    topic: String,
    events: mpsc::Sender<Event>,
}

impl ClientContext for RebalanceContext {}

impl RebalanceContext {
    fn forward(&self, list: &TopicPartitionList, make: fn(Vec<i32>) -> Event) {
        let partitions: Vec<i32> = list
            .elements_for_topic(&self.topic)
            .iter()
            .map(|element| element.partition())
            .collect();
        if partitions.is_empty() {
            return;
        }
        let event = make(partitions);
        if let Err(error) = self.events.try_send(event) {
            tracing::error!(%error, "rebalance event queue full, event lost");
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => self.forward(list, Event::Revoked),
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => tracing::error!(%error, "kafka rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.forward(list, Event::Assigned);
        }
    }
}

/// The group consumer of the reports topic.
pub struct Consumer {
    inner: Arc<StreamConsumer<RebalanceContext>>,
    /// The librdkafka settings it was created with: a rejoin creates a new consumer from them.
    settings: ClientConfig,
    events: mpsc::Receiver<Event>,
    topic: String,
    /// Bound of one blocking call (committed offsets, commit).
    timeout: Duration,
    /// A lag measurement is running: the next one is skipped, so at most one blocking task
    /// waits on watermarks (each up to 5 s) even while Kafka does not answer.
    lag_in_flight: Arc<AtomicBool>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Create the consumer and subscribe to the reports topic.
    pub fn subscribe(config: &Config) -> Result<Self, ConsumeError> {
        let consumer = Self::create(config)?;
        consumer.join()?;
        Ok(consumer)
    }

    /// The consumer, not yet in the group.
    fn create(config: &Config) -> Result<Self, ConsumeError> {
        let mut settings = config.kafka_client_config();
        settings
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("group.id", &config.kafka_group)
            .set("client.id", "palisade-processor")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                config.kafka_session_timeout.as_millis().to_string(),
            )
            .set(
                "queued.max.messages.kbytes",
                config.kafka_prefetch_kbytes.get().to_string(),
            );
        Self::from_settings(
            settings,
            config.kafka_topic.clone(),
            config.clickhouse_timeout.min(Duration::from_secs(30)),
        )
    }

    /// A consumer of `topic` created from complete librdkafka `settings`.
    fn from_settings(
        settings: ClientConfig,
        topic: String,
        timeout: Duration,
    ) -> Result<Self, ConsumeError> {
        let (sender, events) = mpsc::channel(EVENT_QUEUE);
        let context = RebalanceContext {
            topic: topic.clone(),
            events: sender,
        };
        let inner: StreamConsumer<RebalanceContext> = settings
            .create_with_context(context)
            .map_err(ConsumeError::Create)?;
        Ok(Self {
            inner: Arc::new(inner),
            settings,
            events,
            topic,
            timeout,
            lag_in_flight: Arc::new(AtomicBool::new(false)),
        })
    }

    fn join(&self) -> Result<(), ConsumeError> {
        self.inner
            .subscribe(&[self.topic.as_str()])
            .map_err(|source| ConsumeError::Subscribe {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Leave the group and join it again as a new member (see [`crate::group`]). The caller
    /// has forgotten its partitions: no rebalance event of the old member is delivered.
    ///
    /// The old consumer is closed (its LeaveGroup sent and answered) before the new one joins:
    /// on tansu a join that comes first keeps the dead leader for good.
    pub async fn rejoin(&mut self) -> Result<(), ConsumeError> {
        let fresh = Self::from_settings(self.settings.clone(), self.topic.clone(), self.timeout)?;
        self.inner.unsubscribe();
        let old = std::mem::replace(self, fresh);
        // Background watermark lookups hold clones for at most their timeout each.
        let deadline = tokio::time::Instant::now() + REJOIN_CLOSE_WAIT;
        while Arc::strong_count(&old.inner) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Dropping the last handle closes the consumer, blocking until it has left the group.
        tokio::task::spawn_blocking(move || drop(old))
            .await
            .map_err(|_| ConsumeError::Panicked("close"))?;
        self.join()
    }

    /// The group's state and members as the coordinator describes them, and the topic's
    /// partition count.
    pub async fn describe_group(&self, group: &str) -> Result<GroupView, ConsumeError> {
        let (inner, topic, group) = (self.inner.clone(), self.topic.clone(), group.to_owned());
        // Short: the loop waits for the answer.
        let timeout = self.timeout.min(Duration::from_secs(2));
        tokio::task::spawn_blocking(move || {
            let kafka = |operation| move |source| ConsumeError::Kafka { operation, source };
            let groups = inner
                .fetch_group_list(Some(&group), timeout)
                .map_err(kafka("describe group"))?;
            let metadata = inner
                .fetch_metadata(Some(&topic), timeout)
                .map_err(kafka("topic metadata"))?;
            let described = groups.groups().iter().find(|g| g.name() == group);
            Ok(GroupView {
                state: described.map_or_else(String::new, |g| g.state().to_owned()),
                members: described.map_or(0, |g| g.members().len()),
                partitions: metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map_or(0, |t| t.partitions().len()),
            })
        })
        .await
        .map_err(|_| ConsumeError::Panicked("describe group"))?
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next record (cancellation safe). Rebalance callbacks run in here.
    pub async fn recv(&self) -> Result<Record, KafkaError> {
        let message = self.inner.recv().await?;
        Ok(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        })
    }

    /// The next queued rebalance event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Kafka's committed offset (`None`: nothing committed) and metadata of `partitions`.
    pub async fn committed(
        &self,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, (Option<i64>, String)>, ConsumeError> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&self.topic, *partition);
        }
        let (inner, timeout, topic) = (self.inner.clone(), self.timeout, self.topic.clone());
        let list = tokio::task::spawn_blocking(move || inner.committed_offsets(list, timeout))
            .await
            .map_err(|_| ConsumeError::Panicked("committed offsets"))?
            .map_err(|source| ConsumeError::Kafka {
                operation: "committed offsets",
                source,
            })?;
        Ok(list
            .elements_for_topic(&topic)
            .iter()
            .map(|element| {
                let offset = match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                };
                (element.partition(), (offset, element.metadata().to_owned()))
            })
            .collect())
    }

    /// Commit `points` (offset and dedup metadata) synchronously.
    pub async fn commit(&self, points: &BTreeMap<i32, CommitPoint>) -> Result<(), ConsumeError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (partition, point) in points {
            let mut element = list.add_partition(&self.topic, *partition);
            element
                .set_offset(Offset::Offset(point.offset))
                .map_err(|source| ConsumeError::Kafka {
                    operation: "commit",
                    source,
                })?;
            element.set_metadata(point.metadata());
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.commit(&list, CommitMode::Sync))
            .await
            .map_err(|_| ConsumeError::Panicked("commit"))?
            .map_err(|source| ConsumeError::Kafka {
                operation: "commit",
                source,
            })
    }

    /// Record `processor_consumer_lag_messages` per partition: the broker's high watermark minus
    /// the committed offset. Runs in the background (one watermark request per partition,
    /// bounded by the consumer's timeout), skipped while the previous one still runs; the loop
    /// calls it every [`LAG_INTERVAL`], paused or not.
    pub fn report_lag(&self, committed: Vec<(i32, i64)>) {
        if committed.is_empty() || self.lag_in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        let (inner, topic) = (self.inner.clone(), self.topic.clone());
        let in_flight = Arc::clone(&self.lag_in_flight);
        let timeout = self.timeout.min(Duration::from_secs(5));
        drop(tokio::task::spawn_blocking(move || {
            for (partition, offset) in committed {
                match inner.fetch_watermarks(&topic, partition, timeout) {
                    Ok((_, high)) => crate::metrics::consumer_lag(partition, high - offset),
                    Err(error) => {
                        tracing::debug!(%error, partition, "cannot fetch the high watermark");
                    }
                }
            }
            in_flight.store(false, Ordering::Release);
        }));
    }

    /// Move a partition's fetch position (after its assignment, before its first record).
    /// librdkafka drops records fetched from the old position.
    pub async fn seek(&self, partition: i32, offset: i64) -> Result<(), ConsumeError> {
        let (inner, topic, timeout) = (self.inner.clone(), self.topic.clone(), self.timeout);
        tokio::task::spawn_blocking(move || {
            inner.seek(&topic, partition, Offset::Offset(offset), timeout)
        })
        .await
        .map_err(|_| ConsumeError::Panicked("seek"))?
        .map_err(|source| ConsumeError::Kafka {
            operation: "seek",
            source,
        })
    }

    /// Stop (`pause = true`) or restart fetching `partitions`; the consumer stays in the group.
    pub fn set_paused(&self, partitions: &[i32], pause: bool) -> Result<(), ConsumeError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&self.topic, *partition);
        }
        let result = if pause {
            self.inner.pause(&list)
        } else {
            self.inner.resume(&list)
        };
        result.map_err(|source| ConsumeError::Kafka {
            operation: if pause { "pause" } else { "resume" },
            source,
        })
    }

    /// Leave the group cleanly (revokes partitions; no commit).
    pub fn close(&self) {
        self.inner.unsubscribe();
    }
}
