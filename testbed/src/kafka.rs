//! A real Kafka-compatible broker for tests: tansu on a free loopback port, plus topic creation
//! and a test consumer that reads everything from the beginning.
//!
//! tansu is found at `$PALISADE_TANSU`, `$HOME/.cache/palisade/tansu/bin/tansu` or on `PATH`
//! (install: `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql`). tansu
//! does not auto-create topics: call [`Tansu::create_topic`].

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};
use tempfile::TempDir;

use crate::process::ChildProcess;

/// Longest wait for a started broker to answer a metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports are tried when the broker fails to start (a port taken in between).
const START_ATTEMPTS: usize = 3;
/// Longest wait for a created topic to show all its partitions with a leader.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(15);

/// Where tansu keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `memory://tansu/`: fastest; topics and messages are lost by [`Tansu::stop`].
    Memory,
    /// `sqlite://tansu.db` in the broker's temp dir: survives [`Tansu::stop`] + [`Tansu::restart`].
    Sqlite,
}

impl Storage {
    fn url(self) -> &'static str {
        match self {
            Self::Memory => "memory://tansu/",
            // Relative to the broker's working directory, its temp dir.
            Self::Sqlite => "sqlite://tansu.db",
        }
    }
}

/// A running tansu broker, killed on drop.
#[derive(Debug)]
pub struct Tansu {
    binary: PathBuf,
    storage: Storage,
    port: u16,
    process: Option<ChildProcess>,
    dir: TempDir,
}

impl Tansu {
    /// Start tansu with in-memory storage (see [`Tansu::start_with`]).
    pub async fn start() -> Option<Self> {
        Self::start_with(Storage::Memory).await
    }

    /// Start tansu on a free loopback port and wait until it answers metadata. `None` (after
    /// printing `skipping: ...`) when tansu is missing or cannot start; panics instead when
    /// `CI=true`.
    pub async fn start_with(storage: Storage) -> Option<Self> {
        Self::start_on(None, storage).await
    }

    /// Start tansu on `port` (e.g. one a client was already pointed at while nothing listened
    /// there), else like [`Tansu::start_with`].
    pub async fn start_at(port: u16, storage: Storage) -> Option<Self> {
        Self::start_on(Some(port), storage).await
    }

    async fn start_on(port: Option<u16>, storage: Storage) -> Option<Self> {
        let binary = match find_binary() {
            Ok(binary) => binary,
            Err(error) => return crate::unavailable("tansu", format!("{error:#}")),
        };
        match Self::launch(binary, storage, port).await {
            Ok(tansu) => Some(tansu),
            Err(error) => crate::unavailable("tansu", format!("{error:#}")),
        }
    }

    async fn launch(binary: PathBuf, storage: Storage, port: Option<u16>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("palisade-tansu-")
            .tempdir()?;
        let mut tansu = Self {
            binary,
            storage,
            port: 0,
            process: None,
            dir,
        };
        let attempts = if port.is_some() { 1 } else { START_ATTEMPTS };
        let mut last_error = None;
        for _ in 0..attempts {
            tansu.port = match port {
                Some(port) => port,
                None => crate::free_port()?,
            };
            match tansu.spawn_and_wait().await {
                Ok(()) => return Ok(tansu),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("tansu did not start")))
    }

    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args([
                "--storage-engine",
                self.storage.url(),
                "--cluster-id",
                "palisade-test",
            ])
            .current_dir(self.dir.path());
        let log = self.dir.path().join("tansu.log");
        let mut process = ChildProcess::spawn("tansu", command, &log)?;
        let started = Instant::now();
        loop {
            if let Some(status) = process.exited() {
                return Err(process.failure(format!("exited during startup with {status}")));
            }
            if fetch_metadata(&self.bootstrap(), None, Duration::from_millis(500))
                .await
                .is_ok()
            {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(process.failure(format!("no metadata answer within {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.process = Some(process);
        Ok(())
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// Create `name` with `partitions` partitions and wait until every partition has a leader.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.bootstrap())
            .create()
            .context("create kafka admin client")?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(TOPIC_TIMEOUT));
        for result in admin.create_topics([&topic], &options).await? {
            if let Err((topic, code)) = result {
                bail!("create topic {topic}: {code}");
            }
        }
        let started = Instant::now();
        loop {
            let metadata =
                fetch_metadata(&self.bootstrap(), Some(name), Duration::from_secs(2)).await;
            let leaders = metadata.map(|metadata| partitions_with_leader(&metadata, name));
            match leaders {
                Ok(count) if count == usize::try_from(partitions).unwrap_or(usize::MAX) => {
                    return Ok(())
                }
                _ if started.elapsed() > TOPIC_TIMEOUT => {
                    bail!("topic {name} has no leader for all {partitions} partitions: {leaders:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Kill the broker (SIGKILL: no clean shutdown). Clients see connection refused until
    /// [`Tansu::restart`].
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Start the broker again on the same port (after [`Tansu::stop`]); with [`Storage::Sqlite`]
    /// topics and messages are still there.
    ///
    /// tansu 0.6 does not keep idempotent-producer state across a restart: an idempotent
    /// producer that was connected before gets `UNKNOWN_PRODUCER_ID` forever (memory storage),
    /// or the sqlite engine panics in its idempotence check and fails every later produce. Test
    /// recovery with [`Tansu::start_at`] (broker absent, then started) instead.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn_and_wait().await
    }
}

/// One message read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The key, as UTF-8 (lossy; Palisade keys are hex).
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
    /// Headers in order, values as bytes (a null value is empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Consumed {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_slice())
    }

    /// Header `name` as text (lossy UTF-8), empty when absent.
    pub fn header_text(&self, name: &str) -> String {
        String::from_utf8_lossy(self.header(name).unwrap_or_default()).into_owned()
    }
}

/// Read `topic` from the beginning of every partition until `expected` messages arrived or
/// `timeout` passed, and return what was read (possibly fewer than `expected`: callers assert
/// the count). To check that nothing beyond `expected` was stored, use [`consume_all`].
///
/// Partitions are assigned directly (no consumer-group rebalance), so reading starts at once.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    read(bootstrap, topic, Stop::After(expected), timeout).await
}

/// Read everything `topic` holds: from the beginning of every partition until no message arrived
/// for `idle` (or `timeout` passed).
///
/// Counting messages this way, rather than from watermarks, is deliberate: tansu 0.6 reports a
/// partition's high watermark as the base offset + 1 of the last produced record batch, which
/// undercounts when that batch held several records.
pub async fn consume_all(
    bootstrap: &str,
    topic: &str,
    idle: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    read(bootstrap, topic, Stop::Idle(idle), timeout).await
}

/// When [`read`] stops (besides its timeout).
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// After this many messages.
    After(usize),
    /// When no message arrived for this long.
    Idle(Duration),
}

async fn read(
    bootstrap: &str,
    topic: &str,
    stop: Stop,
    timeout: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, stop, timeout))
        .await
        .context("consumer task panicked")?
}

fn read_blocking(
    bootstrap: &str,
    topic: &str,
    stop: Stop,
    timeout: Duration,
) -> anyhow::Result<Vec<Consumed>> {
    let deadline = Instant::now() + timeout;
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("palisade-testbed-{}", unique_suffix()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("create kafka consumer")?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    if assignment.count() == 0 {
        bail!("topic {topic} has no partitions");
    }
    consumer.assign(&assignment)?;
    let mut consumed = Vec::new();
    let mut last_arrival = Instant::now();
    loop {
        let now = Instant::now();
        let done = match stop {
            Stop::After(expected) => consumed.len() >= expected,
            Stop::Idle(idle) => now.duration_since(last_arrival) >= idle,
        };
        if done || now >= deadline {
            break;
        }
        let wait = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        let Some(message) = consumer.poll(wait) else {
            continue;
        };
        let message = message.context("consume")?;
        last_arrival = Instant::now();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        consumed.push(Consumed {
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            partition: message.partition(),
            offset: message.offset(),
            headers,
        });
    }
    Ok(consumed)
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "palisade-testbed");
    config
}

async fn fetch_metadata(
    bootstrap: &str,
    topic: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Metadata> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || -> anyhow::Result<Metadata> {
        let consumer: BaseConsumer = client_config(&bootstrap).create()?;
        let metadata = consumer.fetch_metadata(topic.as_deref(), timeout)?;
        if metadata.brokers().is_empty() {
            bail!("metadata lists no broker");
        }
        Ok(metadata)
    })
    .await
    .context("metadata task panicked")?
}

fn partitions_with_leader(metadata: &Metadata, topic: &str) -> usize {
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions())
        .filter(|p| p.error().is_none() && p.leader() >= 0)
        .count()
}

/// A suffix unique within this machine for group ids: pid plus a nanosecond clock reading.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

/// The tansu binary: `$PALISADE_TANSU`, then `$HOME/.cache/palisade/tansu/bin/tansu`, then `PATH`.
pub fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PALISADE_TANSU") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("PALISADE_TANSU={} is not a file", path.display());
    }
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/palisade/tansu/bin/tansu"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("tansu")));
    }
    candidates.into_iter().find(|path| path.is_file()).context(
        "no tansu binary (set PALISADE_TANSU, or `cargo install tansu --version 0.6.0 --locked \
         --features dynostore,libsql --root ~/.cache/palisade/tansu`)",
    )
}
