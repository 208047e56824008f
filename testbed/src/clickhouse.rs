//! A real ClickHouse server for tests: Debian's `clickhouse-server` (18.16) with a minimal config
//! in a temp dir, on free loopback ports, plus a dependency-free HTTP query helper, [`tsv`] (a
//! query through the `clickhouse` client, as cells) and [`render`], the parameter substitution
//! of the analyst queries in `schemas/sql/queries/`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tempfile::TempDir;

use crate::process::ChildProcess;

/// Where Debian's package installs the server.
const SERVER_BINARY: &str = "/usr/sbin/clickhouse-server";
/// Longest wait for `GET /ping` to answer `Ok.` (about 1-5 s here).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many port pairs are tried when the server fails to start.
const START_ATTEMPTS: usize = 3;
/// Bound on a query's answer read by [`ClickHouse::query`].
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// A running ClickHouse server, killed on drop.
#[derive(Debug)]
pub struct ClickHouse {
    http_port: u16,
    // Field order matters: the process is killed before its data dir is removed.
    process: ChildProcess,
    dir: TempDir,
}

impl ClickHouse {
    /// Start ClickHouse on free loopback ports and wait for `GET /ping`. `None` (after printing
    /// `skipping: ...`) when the server is missing or cannot start; panics instead when `CI=true`.
    pub async fn start() -> Option<Self> {
        let binary = std::env::var_os("PALISADE_CLICKHOUSE_SERVER")
            .map_or_else(|| PathBuf::from(SERVER_BINARY), PathBuf::from);
        if !binary.is_file() {
            return crate::unavailable(
                "clickhouse-server",
                format!(
                    "{} not found (apt-get install clickhouse-server)",
                    binary.display()
                ),
            );
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::launch(&binary).await {
                Ok(server) => return Some(server),
                Err(error) => last_error = Some(error),
            }
        }
        crate::unavailable("clickhouse-server", format!("{last_error:?}"))
    }

    async fn launch(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("palisade-clickhouse-")
            .tempdir()?;
        let http_port = crate::free_port()?;
        let tcp_port = crate::free_port()?;
        let config = dir.path().join("config.xml");
        std::fs::write(&config, config_xml(dir.path(), http_port, tcp_port))?;
        std::fs::write(dir.path().join("users.xml"), USERS_XML)?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config-file={}", config.display()))
            .current_dir(dir.path());
        let mut process =
            ChildProcess::spawn("clickhouse-server", command, &dir.path().join("stdout.log"))?;
        let started = Instant::now();
        loop {
            if let Some(status) = process.exited() {
                return Err(failure(
                    &process,
                    dir.path(),
                    format!("exited during startup with {status}"),
                ));
            }
            let ping = http_request(http_port, "GET", "/ping", "");
            if ping.as_deref().is_ok_and(|body| body.trim() == "Ok.") {
                return Ok(Self {
                    http_port,
                    process,
                    dir,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(failure(
                    &process,
                    dir.path(),
                    format!("no ping within {START_TIMEOUT:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), for HTTP clients.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The server's data dir (a temp dir removed on drop).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run `sql` over HTTP and return the body (TabSeparated unless the query says `FORMAT`).
    /// Errors carry ClickHouse's message. Blocking I/O: run it in `spawn_blocking` when the
    /// runtime must keep serving other tasks.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        http_request(self.http_port, "POST", "/", sql)
    }

    /// The server's error log (for debugging a failed test).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/server.err.log")).unwrap_or_default()
    }

    /// The process id, e.g. to check it is gone after drop.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// Run `sql` in `database` through `client` and return the TabSeparated cells of each line,
/// still escaped (`\\`, `\t`, ...: callers comparing text with such characters unescape them).
/// Panics with the query on any error: a test helper.
pub async fn tsv(client: &clickhouse::Client, database: &str, sql: &str) -> Vec<Vec<String>> {
    let bytes = client
        .clone()
        .with_database(database)
        .query_raw(sql)
        .fetch_bytes("TabSeparated")
        .unwrap_or_else(|error| panic!("query does not start: {error}\n{sql}"))
        .collect()
        .await
        .unwrap_or_else(|error| panic!("query failed: {error}\n{sql}"));
    String::from_utf8(bytes.to_vec())
        .unwrap_or_else(|error| panic!("answer is not utf-8: {error}\n{sql}"))
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

/// Undoes TabSeparated escaping (`\\`, `\t`, `\n`, `\0`, `\'`, ...): ClickHouse's, and the
/// same escaping in `palisade-processor recent`'s output.
pub fn unescape_tsv(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A query parameter value for [`render`].
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// For `UInt64` and `UInt32` placeholders.
    UInt(u64),
    /// Unix seconds, for `DateTime` placeholders.
    DateTime(u64),
    /// For `String` placeholders (quoted and escaped).
    Str(&'a str),
}

/// Substitute `{name:Type}` placeholders with literals: ClickHouse 18.16 has no server-side
/// query parameters (documented convention in `schemas/sql/README.md`). Unused parameters are
/// fine. Panics on a malformed placeholder, a missing parameter or a type mismatch, so a query
/// file and its test cannot drift apart silently.
pub fn render(sql: &str, params: &[(&str, Param<'_>)]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .unwrap_or_else(|| panic!("placeholder is not closed: {}", &rest[open..]))
            + open;
        let (name, kind) = rest[open + 1..close]
            .split_once(':')
            .unwrap_or_else(|| panic!("placeholder is not {{name:Type}}: {}", &rest[open..=close]));
        let value = params
            .iter()
            .find(|(param, _)| *param == name.trim())
            .unwrap_or_else(|| panic!("missing parameter {name}"))
            .1;
        let literal = match (kind.trim(), value) {
            ("UInt64" | "UInt32", Param::UInt(number)) => number.to_string(),
            ("DateTime", Param::DateTime(secs)) => format!("toDateTime({secs})"),
            ("String", Param::Str(text)) => {
                format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            (kind, value) => panic!("parameter {name}: {value:?} does not fit {kind}"),
        };
        out.push_str(&literal);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn failure(process: &ChildProcess, dir: &Path, what: String) -> anyhow::Error {
    let errors = std::fs::read_to_string(dir.join("log/server.err.log")).unwrap_or_default();
    let tail: Vec<&str> = errors.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    process.failure(format!("{what}; server.err.log:\n{}", tail.join("\n")))
}

/// A minimal HTTP/1.0 exchange with the server on loopback (no client crate needed): the body of
/// a 200 answer, an error with the body otherwise.
fn http_request(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.take(MAX_RESPONSE_BYTES).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed http response")?;
    let status = head.split_whitespace().nth(1).context("no http status")?;
    if status != "200" {
        bail!("clickhouse answered {status}: {}", body.trim());
    }
    Ok(body.to_owned())
}

/// The server config shared with the local stack (`deploy/clickhouse/config.xml`), for a server
/// whose data, logs and users file live in `dir`.
fn config_xml(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    CONFIG_TEMPLATE
        .replace("@DIR@", &dir.display().to_string())
        .replace("@HTTP_PORT@", &http_port.to_string())
        .replace("@TCP_PORT@", &tcp_port.to_string())
}

const CONFIG_TEMPLATE: &str = include_str!("../../deploy/clickhouse/config.xml");

/// One user, `default`, no password, loopback only (`deploy/clickhouse/users.xml`).
const USERS_XML: &str = include_str!("../../deploy/clickhouse/users.xml");

#[cfg(test)]
mod tests {
    use super::{render, Param};

    #[test]
    fn render_substitutes_every_placeholder_kind() {
        let sql =
            "SELECT {limit:UInt64}, {since: DateTime}, {host:String} WHERE x = {limit:UInt32}";
        let rendered = render(
            sql,
            &[
                ("limit", Param::UInt(5)),
                ("since", Param::DateTime(1_700_006_400)),
                ("host", Param::Str(r"it's\x")),
                ("unused", Param::UInt(1)),
            ],
        );
        assert_eq!(
            rendered,
            r"SELECT 5, toDateTime(1700006400), 'it\'s\\x' WHERE x = 5"
        );
    }

    #[test]
    #[should_panic(expected = "missing parameter limit")]
    fn render_panics_on_a_missing_parameter() {
        render("SELECT {limit:UInt64}", &[]);
    }

    #[test]
    #[should_panic(expected = "does not fit String")]
    fn render_panics_on_a_type_mismatch() {
        render("SELECT {host:String}", &[("host", Param::UInt(1))]);
    }
}
