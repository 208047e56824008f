//! A Kafka broker that can be cut off from its clients and reconnected: tansu behind a loopback
//! TCP relay that tansu advertises as its address, so every client connection (bootstrap and
//! partition leader alike) goes through the relay.
//!
//! [`KafkaLink::cut`] closes the relay's port and every open connection: to ingest and the
//! processor the broker is dead (connection refused, in-flight requests unanswered).
//! [`KafkaLink::restore`] listens on the same port again. The broker itself keeps running, as a
//! real Kafka cluster keeps its data and idempotent-producer state across a broker restart.
//!
//! Why not SIGKILL tansu and restart it: tansu 0.6 does not survive that with an idempotent
//! producer connected. With sqlite storage, the first produce of the old producer id after the
//! restart panics in `tansu_storage::lite::Delegate::idempotent_message_check` ("more or less
//! than one row", lite.rs:503) and the broker then fails every request (`Storage(UnableToSend)`),
//! metadata included; with memory storage everything acknowledged is gone. See
//! `testbed::kafka::Tansu::restart`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed::process::ChildProcess;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Longest wait for the broker to answer and for a topic to be created.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// tansu behind a relay on `port`, stopped on drop.
pub struct KafkaLink {
    /// The relay's port: what clients use as `bootstrap.servers` (`127.0.0.1:PORT`).
    pub port: u16,
    broker_port: u16,
    binary: PathBuf,
    relay: Mutex<Option<CancellationToken>>,
    _broker: ChildProcess,
    _dir: tempfile::TempDir,
}

impl KafkaLink {
    /// Start tansu (memory storage) advertising the relay's port; the relay starts cut off, so
    /// clients started now find no broker. `None` when tansu is missing (testbed's CI rule).
    pub async fn start() -> Option<Arc<Self>> {
        let binary = match testbed::kafka::find_binary() {
            Ok(binary) => binary,
            Err(error) => return testbed::unavailable("tansu", format!("{error:#}")),
        };
        let dir = tempfile::Builder::new()
            .prefix("palisade-tansu-link-")
            .disable_cleanup(std::env::var_os("PALISADE_FAULT_KEEP_LOGS").is_some())
            .tempdir()
            .unwrap();
        let port = testbed::free_port().unwrap();
        let broker_port = testbed::free_port().unwrap();
        let mut command = Command::new(&binary);
        command
            .arg("broker")
            .args(["--listener-url", &format!("tcp://127.0.0.1:{broker_port}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
            ])
            .args([
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                "palisade-faults",
            ])
            .current_dir(dir.path());
        let broker = ChildProcess::spawn("tansu", command, &dir.path().join("tansu.log")).unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_err() {
            assert!(started.elapsed() < START_TIMEOUT, "{}", broker.log_tail(40));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Arc::new(Self {
            port,
            broker_port,
            binary,
            relay: Mutex::new(None),
            _broker: broker,
            _dir: dir,
        }))
    }

    /// `127.0.0.1:PORT` of the relay.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Create `name` with `partitions` partitions (tansu's own CLI, straight to the broker).
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let output = Command::new(&self.binary)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.broker_port))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "tansu topic create {name}: {output:?}"
        );
    }

    /// Listen on the relay port again (or for the first time) and relay new connections.
    pub async fn restore(&self) {
        let mut relay = self.relay.lock().await;
        if relay.is_some() {
            return;
        }
        let started = Instant::now();
        // The port was released by `cut` a moment ago; rebinding may need a few tries.
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(started.elapsed() < START_TIMEOUT, "rebind relay: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let token = CancellationToken::new();
        tokio::spawn(relay_loop(listener, self.broker_port, token.clone()));
        *relay = Some(token);
    }

    /// Close the relay port and every relayed connection.
    pub async fn cut(&self) {
        if let Some(token) = self.relay.lock().await.take() {
            token.cancel();
        }
        // Let the relay tasks drop their sockets and the listener.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn relay_loop(listener: TcpListener, broker_port: u16, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                return;
            };
            tokio::select! {
                // Both sockets are dropped: closed by the kernel, as when a broker process dies.
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
            }
        });
    }
}
