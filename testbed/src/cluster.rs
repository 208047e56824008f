//! A real ClickHouse cluster for tests: one ZooKeeper (Debian's `zookeeper` package, run with
//! the system Java) and two `clickhouse-server` 18.16 nodes, each its own shard with one replica
//! (`remote_servers` cluster [`CLUSTER`], `internal_replication`, `{shard}`/`{replica}` macros,
//! distributed DDL through ZooKeeper), all on free loopback ports in temp dirs, killed on drop.
//!
//! The node config is the shared `deploy/clickhouse/config.xml` plus the cluster sections.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tempfile::TempDir;

use crate::process::ChildProcess;

/// The `remote_servers` name of the test cluster.
pub const CLUSTER: &str = "palisade_test_cluster";
/// Number of shards (one node each).
pub const SHARDS: usize = 2;

const SERVER_BINARY: &str = "/usr/sbin/clickhouse-server";
const JAVA_BINARY: &str = "/usr/bin/java";
/// Where Debian's `zookeeper` package installs the server jar (its manifest names the other
/// jars it needs, all from Debian packages).
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// Longest wait for ZooKeeper to serve (about 0.5 s here) and for a node's `SELECT 1`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many sets of ports are tried when a process fails to start.
const START_ATTEMPTS: usize = 3;

/// A running ZooKeeper (standalone), killed on drop.
#[derive(Debug)]
pub struct ZooKeeper {
    port: u16,
    process: ChildProcess,
    _dir: TempDir,
}

impl ZooKeeper {
    async fn launch(java: &Path, jar: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("palisade-zookeeper-")
            .tempdir()?;
        let port = crate::free_port()?;
        let config = dir.path().join("zoo.cfg");
        std::fs::create_dir_all(dir.path().join("data"))?;
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=srvr\n",
                data = dir.path().join("data").display(),
            ),
        )?;
        let mut command = Command::new(java);
        command
            .arg("-Xmx128m")
            .arg("-cp")
            .arg(jar)
            .arg(format!("-Dzookeeper.log.dir={}", dir.path().display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config)
            .current_dir(dir.path());
        let mut process =
            ChildProcess::spawn("zookeeper", command, &dir.path().join("zookeeper.log"))?;
        let started = Instant::now();
        loop {
            if let Some(status) = process.exited() {
                return Err(process.failure(format!("exited during startup with {status}")));
            }
            if serving(port) {
                return Ok(Self {
                    port,
                    process,
                    _dir: dir,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(process.failure(format!("not serving within {START_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// Whether ZooKeeper serves clients: its `srvr` answer names the mode. (`ruok` answers `imok`
/// before the server accepts sessions, and ClickHouse 18.16 crashes on a refused handshake.)
fn serving(port: u16) -> bool {
    let answer = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"srvr")?;
        let mut answer = String::new();
        stream.take(4096).read_to_string(&mut answer)?;
        Ok(answer)
    };
    answer().is_ok_and(|answer| answer.contains("Mode: standalone"))
}

/// One ClickHouse node of the cluster.
#[derive(Debug)]
pub struct Node {
    http_port: u16,
    // Field order matters: the process is killed before its data dir is removed.
    process: ChildProcess,
    dir: TempDir,
}

impl Node {
    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A `clickhouse` client for this node (validation off: 18.16 rejects its setting).
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(self.http_url())
            .with_validation(false)
    }

    /// The server's error log (for debugging a failed test).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/server.err.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// Ports of one node, chosen before any config is written (each config names every node).
#[derive(Debug, Clone, Copy)]
struct Ports {
    http: u16,
    tcp: u16,
    interserver: u16,
}

/// ZooKeeper and [`SHARDS`] ClickHouse nodes forming the cluster [`CLUSTER`].
#[derive(Debug)]
pub struct Cluster {
    // Nodes first: they are killed before ZooKeeper.
    nodes: Vec<Node>,
    zookeeper: ZooKeeper,
}

impl Cluster {
    /// Start ZooKeeper and the nodes. `None` (after printing `skipping: ...`) when
    /// clickhouse-server, Java or ZooKeeper is missing or cannot start; panics instead when
    /// `CI=true`. Overrides: `PALISADE_CLICKHOUSE_SERVER`, `PALISADE_JAVA`,
    /// `PALISADE_ZOOKEEPER_JAR`.
    pub async fn start() -> Option<Self> {
        let server = binary("PALISADE_CLICKHOUSE_SERVER", SERVER_BINARY);
        let java = binary("PALISADE_JAVA", JAVA_BINARY);
        let jar = binary("PALISADE_ZOOKEEPER_JAR", ZOOKEEPER_JAR);
        for (path, what) in [
            (&server, "apt-get install clickhouse-server"),
            (&java, "apt-get install default-jre-headless"),
            (&jar, "apt-get install zookeeper"),
        ] {
            if !path.is_file() {
                return crate::unavailable(
                    "clickhouse cluster",
                    format!("{} not found ({what})", path.display()),
                );
            }
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::launch(&server, &java, &jar).await {
                Ok(cluster) => return Some(cluster),
                Err(error) => last_error = Some(error),
            }
        }
        crate::unavailable("clickhouse cluster", format!("{last_error:?}"))
    }

    async fn launch(server: &Path, java: &Path, jar: &Path) -> anyhow::Result<Self> {
        let zookeeper = ZooKeeper::launch(java, jar).await?;
        let mut ports = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            ports.push(Ports {
                http: crate::free_port()?,
                tcp: crate::free_port()?,
                interserver: crate::free_port()?,
            });
        }
        let mut nodes = Vec::with_capacity(SHARDS);
        for (index, own) in ports.iter().enumerate() {
            nodes.push(launch_node(server, index, *own, &ports, zookeeper.port)?);
        }
        let started = Instant::now();
        for node in &mut nodes {
            loop {
                if let Some(status) = node.process.exited() {
                    return Err(failure(
                        node,
                        format!("exited during startup with {status}"),
                    ));
                }
                if zookeeper_ready(node).await {
                    break;
                }
                if started.elapsed() > START_TIMEOUT {
                    return Err(failure(node, format!("no answer within {START_TIMEOUT:?}")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // ClickHouse 18.16 crashes on the first `ON CLUSTER` query when its DDL worker could not
        // reach ZooKeeper at start-up (seen under load): start afresh instead.
        for node in &nodes {
            if node.error_log().contains("DDLWorker") {
                return Err(failure(node, "distributed DDL worker failed".to_owned()));
            }
        }
        Ok(Self { nodes, zookeeper })
    }

    /// The nodes; node `i` is shard `i + 1`.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn zookeeper(&self) -> &ZooKeeper {
        &self.zookeeper
    }
}

/// The node answers and its distributed DDL queue exists in ZooKeeper (created by the DDL
/// worker once it has a session), so an `ON CLUSTER` query can be queued.
async fn zookeeper_ready(node: &Node) -> bool {
    node.client()
        .query("SELECT name FROM system.zookeeper WHERE path = '/clickhouse/task_queue'")
        .fetch_all::<String>()
        .await
        .is_ok_and(|names| names.iter().any(|name| name == "ddl"))
}

fn binary(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn launch_node(
    server: &Path,
    index: usize,
    own: Ports,
    all: &[Ports],
    zookeeper_port: u16,
) -> anyhow::Result<Node> {
    let dir = tempfile::Builder::new()
        .prefix("palisade-clickhouse-node-")
        .tempdir()?;
    let config = dir.path().join("config.xml");
    std::fs::write(
        &config,
        node_config(dir.path(), index, own, all, zookeeper_port)?,
    )?;
    std::fs::write(dir.path().join("users.xml"), USERS_XML)?;
    let mut command = Command::new(server);
    command
        .arg(format!("--config-file={}", config.display()))
        .current_dir(dir.path());
    let process =
        ChildProcess::spawn("clickhouse-server", command, &dir.path().join("stdout.log"))?;
    Ok(Node {
        http_port: own.http,
        process,
        dir,
    })
}

/// The shared single-server config with the cluster sections added before `</yandex>`.
fn node_config(
    dir: &Path,
    index: usize,
    own: Ports,
    all: &[Ports],
    zookeeper_port: u16,
) -> anyhow::Result<String> {
    let base = CONFIG_TEMPLATE
        .replace("@DIR@", &dir.display().to_string())
        .replace("@HTTP_PORT@", &own.http.to_string())
        .replace("@TCP_PORT@", &own.tcp.to_string());
    let end = base
        .rfind("</yandex>")
        .context("deploy/clickhouse/config.xml has no </yandex>")?;
    let shards: String = all
        .iter()
        .map(|ports| {
            format!(
                "<shard><internal_replication>true</internal_replication>\
                 <replica><host>127.0.0.1</host><port>{}</port></replica></shard>",
                ports.tcp
            )
        })
        .collect();
    let cluster = format!(
        "    <interserver_http_host>127.0.0.1</interserver_http_host>\n\
         \x20   <interserver_http_port>{interserver}</interserver_http_port>\n\
         \x20   <zookeeper><node><host>127.0.0.1</host><port>{zookeeper_port}</port></node></zookeeper>\n\
         \x20   <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n\
         \x20   <remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>\n\
         \x20   <macros><shard>{shard}</shard><replica>node{shard}</replica></macros>\n",
        interserver = own.interserver,
        shard = index + 1,
    );
    Ok(format!("{}{cluster}{}", &base[..end], &base[end..]))
}

fn failure(node: &Node, what: String) -> anyhow::Error {
    let errors = node.error_log();
    let tail: Vec<&str> = errors.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    node.process
        .failure(format!("{what}; server.err.log:\n{}", tail.join("\n")))
}

const CONFIG_TEMPLATE: &str = include_str!("../../deploy/clickhouse/config.xml");
const USERS_XML: &str = include_str!("../../deploy/clickhouse/users.xml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_config_names_every_shard_and_its_own_macros() {
        let ports = [
            Ports {
                http: 1,
                tcp: 11,
                interserver: 21,
            },
            Ports {
                http: 2,
                tcp: 12,
                interserver: 22,
            },
        ];
        let config =
            node_config(Path::new("/tmp/x"), 1, ports[1], &ports, 99).expect("template ok");
        assert!(config.contains("<http_port>2</http_port>"), "{config}");
        assert!(config.contains("<port>11</port>") && config.contains("<port>12</port>"));
        assert!(config.contains("<macros><shard>2</shard><replica>node2</replica></macros>"));
        assert!(config.contains("<interserver_http_port>22</interserver_http_port>"));
        assert!(config.contains("<port>99</port></node></zookeeper>"));
        assert!(config.trim_end().ends_with("</yandex>"));
    }
}
