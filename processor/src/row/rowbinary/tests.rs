//! RowBinary rows against the `clickhouse` crate's typed insert of [`ReportRow`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use super::*;

/// The body `clickhouse::Client::insert::<ReportRow>` sends for `rows` (validation off, no
/// compression: RowBinary as the typed serialisation writes it), captured by a one-request HTTP
/// server on loopback. Builds its own runtime: call it from a plain `#[test]`.
pub(crate) fn typed_insert_bytes(rows: &[ReportRow]) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut chunked = false;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if header == "transfer-encoding: chunked" {
                chunked = true;
            }
            if let Some(value) = header.strip_prefix("content-length: ") {
                length = value.parse().unwrap();
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let size = usize::from_str_radix(size.trim_end(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).unwrap();
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body).unwrap();
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        body
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = clickhouse::Client::default()
            .with_url(url)
            .with_compression(clickhouse::Compression::None)
            .with_validation(false);
        let mut insert = client.insert::<ReportRow>("reports").await.unwrap();
        for row in rows {
            insert.write(row).await.unwrap();
        }
        insert.end().await.unwrap();
    });
    server.join().unwrap()
}

fn full_row() -> ReportRow {
    ReportRow {
        row_id: u64::MAX,
        version: 1 << 40,
        project_id: 42,
        day: u16::MAX,
        window_start: 1_700_000_040,
        first_seen: 1_700_000_041,
        last_seen: u32::MAX,
        occurrences: 7,
        fingerprint: 0x0123_4567_89ab_cdef,
        dedup_key: 0xabc,
        message_id: "m".into(),
        kind: "csp-violation".into(),
        report_type: "csp-violation".into(),
        wire: "legacy-csp".into(),
        disposition: "enforce".into(),
        environment: "prod".into(),
        release: "1.2.3".into(),
        document_url: "https://www.example.com/p\u{e9}".into(),
        document_origin: "https://www.example.com".into(),
        document_host: "www.example.com".into(),
        document_path: "/p".into(),
        referrer: "r".into(),
        // Lengths of one, two and three varint bytes.
        blocked_url: "b".repeat(127),
        blocked_class: "url".into(),
        blocked_scheme: "https".into(),
        blocked_host: "h".repeat(128),
        blocked_domain: "d".repeat(16_384),
        blocked_origin: "o".into(),
        third_party: 1,
        effective_directive: "script-src-elem".into(),
        directive_family: "script-src".into(),
        violated_directive: "script-src".into(),
        source_file: "s".into(),
        source_host: "sh".into(),
        line_number: 12,
        column_number: u32::MAX,
        sample: "alert(\"\u{1F600}\")".into(),
        status_code: 404,
        policy_hash: 99,
        original_policy: "default-src 'self'".into(),
        user_agent: "UA".into(),
        ua_family: "Chrome".into(),
        ua_major: "121".into(),
        os_family: "Linux".into(),
        device_class: "pc".into(),
        client_ip: "203.0.113.0".into(),
        country: "DE".into(),
        noise: "n".into(),
        nel_phase: "dns".into(),
        nel_type: "dns.name_not_resolved".into(),
        server_ip: "192.0.2.1".into(),
        elapsed_ms: 5,
        cert_hostname: "c".into(),
        cert_port: 443,
        details: "{\"details\":{}}".into(),
    }
}

#[test]
fn written_rows_are_what_the_typed_insert_sends() {
    let rows = vec![full_row(), ReportRow::default(), full_row()];
    let encoded = Rows::from(rows.as_slice());
    assert_eq!(encoded.len(), 3);
    assert_eq!(encoded.bytes_of(0..3), typed_insert_bytes(&rows).as_slice());
    assert_eq!(encoded.to_report_rows().unwrap(), rows);
    assert_eq!(encoded.keys()[0], RowKey::from(&rows[0]));
}

#[test]
fn ranges_and_row_ends() {
    let rows = vec![full_row(), ReportRow::default(), full_row()];
    let encoded = Rows::from(rows.as_slice());
    let one = |i: usize| Rows::from(&rows[i..=i]);
    assert_eq!(encoded.bytes_of(1..2), one(1).bytes_of(0..1));
    assert_eq!(encoded.bytes_of(2..3), one(2).bytes_of(0..1));
    assert!(encoded.bytes_of(1..1).is_empty());
    let lens: Vec<usize> = (0..3).map(|i| one(i).byte_len()).collect();
    let ends: Vec<usize> = encoded.ends_of(1..3).collect();
    assert_eq!(ends, [lens[1], lens[1] + lens[2]]);
    assert_eq!(encoded.byte_len(), lens.iter().sum::<usize>());
    assert_eq!(encoded.row(1).unwrap(), ReportRow::default());
    assert_eq!(encoded.copy_of(1..3), Rows::from(&rows[1..3]));
    assert_eq!(encoded.row(3), Err(RowBinaryError::NoSuchRow(3)));
    // A writer that writes nothing adds no row.
    let mut empty = Rows::default();
    empty.push_with(RowKey::default(), |_| {});
    assert!(empty.is_empty());
}

#[test]
fn reading_refuses_a_cut_or_padded_row() {
    let encoded = Rows::from(&[full_row()][..]);
    let bytes = encoded.bytes_of(0..1);
    for end in 0..bytes.len() {
        assert!(ReportRow::read_rowbinary(&bytes[..end]).is_err(), "{end}");
    }
    let mut padded = bytes.to_vec();
    padded.push(0);
    assert_eq!(
        ReportRow::read_rowbinary(&padded),
        Err(RowBinaryError::Trailing(1))
    );
}
