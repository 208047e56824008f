//! The harness itself against the real servers: each one starts, answers, and is gone after drop.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Whether a process with this id still exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`: the state follows the last parenthesis.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.trim_start());
    state.is_some_and(|state| !state.starts_with('Z'))
}

#[tokio::test]
async fn tansu_round_trips_keyed_messages_with_headers() {
    let Some(tansu) = testbed::kafka::Tansu::start().await else {
        return;
    };
    tansu
        .create_topic("roundtrip", 3)
        .await
        .expect("create topic");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..6 {
        let key = format!("key-{}", i % 2);
        let payload = format!("payload-{i}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "h",
            value: Some("v"),
        });
        let record = FutureRecord::to("roundtrip")
            .key(&key)
            .payload(&payload)
            .headers(headers);
        producer
            .send(record, Duration::from_secs(5))
            .await
            .expect("delivered");
    }

    let consumed =
        testbed::kafka::consume(&tansu.bootstrap(), "roundtrip", 7, Duration::from_secs(5))
            .await
            .expect("consume");
    assert_eq!(consumed.len(), 6, "exactly what was produced: {consumed:?}");
    let mut payloads: Vec<_> = consumed
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    assert_eq!(
        payloads,
        (0..6).map(|i| format!("payload-{i}")).collect::<Vec<_>>()
    );
    for message in &consumed {
        assert_eq!(message.header("h"), Some(&b"v"[..]));
        let same_key = consumed.iter().filter(|m| m.key == message.key);
        assert!(
            same_key.clone().all(|m| m.partition == message.partition),
            "one key, one partition"
        );
    }
    let mut all = testbed::kafka::consume_all(
        &tansu.bootstrap(),
        "roundtrip",
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .await
    .expect("consume all");
    // Order holds within a partition only: compare in (partition, offset) order.
    let mut consumed = consumed;
    consumed.sort_by_key(|m| (m.partition, m.offset));
    all.sort_by_key(|m| (m.partition, m.offset));
    assert_eq!(all, consumed, "consume_all reads the same six messages");
}

#[tokio::test]
async fn tansu_sqlite_storage_survives_a_restart() {
    let Some(mut tansu) = testbed::kafka::Tansu::start_with(testbed::kafka::Storage::Sqlite).await
    else {
        return;
    };
    tansu
        .create_topic("durable", 1)
        .await
        .expect("create topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let record = FutureRecord::to("durable").key("k").payload("before");
    producer
        .send(record, Duration::from_secs(5))
        .await
        .expect("delivered before restart");

    let bootstrap = tansu.bootstrap();
    tansu.stop();
    tansu.restart().await.expect("restart");
    assert_eq!(tansu.bootstrap(), bootstrap, "same port after restart");

    let record = FutureRecord::to("durable").key("k").payload("after");
    producer
        .send(record, Duration::from_secs(5))
        .await
        .expect("delivered after restart");
    let consumed = testbed::kafka::consume(&bootstrap, "durable", 2, Duration::from_secs(10))
        .await
        .expect("consume");
    let payloads: Vec<_> = consumed.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(payloads, [&b"before"[..], &b"after"[..]]);
}

#[tokio::test]
async fn clickhouse_answers_queries_and_is_killed_on_drop() {
    let Some(clickhouse) = testbed::clickhouse::ClickHouse::start().await else {
        return;
    };
    assert_eq!(clickhouse.query("SELECT 1").expect("select").trim(), "1");
    clickhouse
        .query("CREATE TABLE t (x UInt8) ENGINE = Memory")
        .expect("create");
    clickhouse
        .query("INSERT INTO t VALUES (7), (8)")
        .expect("insert");
    assert_eq!(
        clickhouse
            .query("SELECT sum(x) FROM t")
            .expect("sum")
            .trim(),
        "15"
    );
    let error = clickhouse
        .query("SELECT nope FROM t")
        .expect_err("unknown column");
    assert!(error.to_string().contains("nope"), "{error}");

    let pid = clickhouse.pid();
    let data = clickhouse.data_dir().to_owned();
    drop(clickhouse);
    assert!(
        !alive(pid),
        "clickhouse-server {pid} still running after drop"
    );
    assert!(!data.exists(), "data dir removed");
}

#[tokio::test]
async fn chromium_loads_a_page_and_is_killed_on_drop() {
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hello", server.local_addr().expect("addr"));
    let Some(mut chromium) = testbed::chromium::Chromium::launch(&url, &Default::default()) else {
        return;
    };

    // Serve the page and return the first request line (Chromium may open and close speculative
    // connections first).
    let accept = std::thread::spawn(move || loop {
        let (stream, _) = server.accept().expect("browser connects");
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            continue;
        }
        let body = "<!doctype html><title>hi</title>";
        let mut stream = reader.into_inner();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        break request_line;
    });
    let started = Instant::now();
    while !accept.is_finished() && started.elapsed() < Duration::from_secs(30) {
        assert!(
            chromium.running(),
            "chromium exited early:\n{}",
            chromium.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        accept.is_finished(),
        "chromium never requested the page:\n{}",
        chromium.log_tail(40)
    );
    let request_line = accept.join().expect("server thread");
    assert!(request_line.starts_with("GET /hello "), "{request_line:?}");

    let profile = chromium.profile_dir().to_owned();
    chromium.stop();
    assert!(!chromium.running());
    drop(chromium);
    assert!(!profile.exists(), "profile dir removed");
}

#[test]
fn self_signed_certificate_files_are_pem() {
    let tls = testbed::tls::SelfSigned::generate().expect("generate");
    let cert = std::fs::read_to_string(tls.cert_path()).expect("cert file");
    let key = std::fs::read_to_string(tls.key_path()).expect("key file");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert!(!tls.cert_der.is_empty());
}

#[test]
fn free_ports_are_bindable() {
    let port = testbed::free_port().expect("free port");
    TcpListener::bind(("127.0.0.1", port)).expect("port is free");
}

/// `GET path` over plain HTTP/1.0 from a blocking thread; the whole response.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect to page server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send request");
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).expect("read response");
        response
    })
    .await
    .expect("request thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_server_serves_the_page_with_its_headers_and_the_script() {
    let headers = format!("Content-Security-Policy: {}\r\n", testbed::page::POLICY);
    let addr = testbed::page::serve(headers, None)
        .await
        .expect("page server");

    let page = http_get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains(&format!(
            "\r\nContent-Security-Policy: {}\r\n",
            testbed::page::POLICY
        )),
        "{page}"
    );
    assert!(page.ends_with(testbed::page::PAGE_HTML), "{page}");
    assert!(page.contains("<script src=\"/app.js\"></script>"));

    let script = http_get(addr, "/app.js").await;
    assert!(
        script.contains("Content-Type: text/javascript\r\n"),
        "{script}"
    );
    assert!(script.ends_with(testbed::page::APP_JS), "{script}");
    assert!(script.contains("eval(\"1 + 1\")"));

    let missing = http_get(addr, "/nothing").await;
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
}
