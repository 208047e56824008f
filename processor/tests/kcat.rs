//! Reading the reports topic by hand, as README documents it: the real `kcat` consumes a REAL
//! broker (tansu, testbed) holding binary and JSON payloads, and `palisade-processor decode`
//! turns its `-f '%S %s\n'` output into one JSON line per message, the same JSON whichever
//! layout the payload was written in.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{MessageFormat, ReportMessage};
use testbed::kafka::Tansu;

const BINARY: &str = env!("CARGO_BIN_EXE_palisade-processor");

/// `kcat -V`, or `None` after the CI rule (a loud failure when `CI=true`).
fn kcat_available() -> Option<()> {
    match Command::new("kcat").arg("-V").output() {
        Ok(output) if output.status.success() => Some(()),
        Ok(output) => testbed::unavailable("kcat", format!("kcat -V: {}", output.status)),
        Err(error) => testbed::unavailable("kcat", error),
    }
}

/// `palisade-processor decode` run on `input`.
fn decode(input: &[u8]) -> Output {
    let mut child = Command::new(BINARY)
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn kcat_output_piped_through_decode_prints_every_message_as_json() {
    let Some(()) = kcat_available() else { return };
    let Some(kafka) = Tansu::start().await else {
        return;
    };
    let topic = "kcat-reports";
    kafka.create_topic(topic, 1).await.unwrap();

    // Every fixture report, alternately in each layout (some hold newlines in their text).
    let mut messages = Vec::new();
    for name in [
        "legacy_wrapped.json",
        "nel_network_error.json",
        "coep.json",
        "crash.json",
    ] {
        for report in common::fixture_reports(name) {
            let id = format!("m{}", messages.len());
            messages.push(common::message(
                report,
                "203.0.113.9",
                id,
                common::RECEIVED_AT_MS,
            ));
        }
    }
    assert!(messages.len() >= 4, "the fixtures hold reports");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("enable.idempotence", "false")
        .create()
        .unwrap();
    let mut expected = String::new();
    for (i, message) in messages.iter().enumerate() {
        let format = if i % 2 == 0 {
            MessageFormat::Binary
        } else {
            MessageFormat::Json
        };
        let mut payload = Vec::new();
        message.encode_as(format, &mut payload);
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
        expected.push_str(std::str::from_utf8(&message.encode()).unwrap());
        expected.push('\n');
    }

    let kcat = Command::new("kcat")
        .args(["-C", "-b", &kafka.bootstrap(), "-t", topic, "-e", "-q"])
        .args(["-f", "%S %s\n"])
        .output()
        .unwrap();
    assert!(
        kcat.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&kcat.stderr)
    );
    let output = decode(&kcat.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "decode: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout, expected, "decode's stderr: {stderr}");
    for (line, message) in stdout.lines().zip(&messages) {
        assert_eq!(&ReportMessage::decode(line.as_bytes()).unwrap(), message);
    }
}

#[test]
fn a_payload_that_does_not_decode_is_named_and_the_exit_code_says_so() {
    let output = decode(b"3 \xb5\x07\x01\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("frame 1: unsupported binary layout 7"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
