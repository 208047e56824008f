//! The request path of ingest without the network and without Kafka: route, client IP, key
//! extraction and authorisation against a fixed projects snapshot, content encoding (with the
//! decompression cap), parsing with a pooled parser, filters, privacy, fingerprint and the
//! Kafka message, in the order `routes::App::ingest` applies them.
//!
//! `routes.rs` has no I/O-free entry point (the handler takes a hyper `Incoming` body and
//! publishes), so this calls the same public pieces in the same order; the per-IP limiter and
//! the project quota (time-dependent governor state) are left out.
//!
//! Input layout (so corpus seeds are readable: a small header, then the body as sent):
//! 8 control bytes, then three strings each prefixed by one length byte (extra query, a header
//! name, its value), then the body (the rest). See `Input::read`.

#![no_main]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use ingest::projects::{IpPolicy, Snapshot};
use ingest::validate::{self, Encoding, ParserPool};
use ingest::{auth, client, filter, privacy, routes};
use libfuzzer_sys::fuzz_target;
use schemas::{ParseLimits, ReportMessage, MESSAGE_VERSION};

/// Tenants the inputs are checked against: every key state, an allow-list, every ignore list,
/// URL stripping and each client-IP policy.
const PROJECTS: &str = r#"
[[project]]
id = 1
name = "shop"
quota = { per_second = 100, burst = 100 }
keys = [{ public_key = "k1" }, { public_key = "off", state = "disabled" }, { public_key = "gone", state = "revoked" }]
allowed_hosts = ["shop.example", "*.shop.example"]
[project.filters]
ignore_blocked_hosts = ["*.ads.example"]
ignore_source_hosts = ["static.example"]
ignore_directives = ["font-src"]
ignore_document_hosts = ["staging.shop.example"]
[project.privacy]
strip_query = true
strip_fragment = true
drop_referrer = true
client_ip = "hash"
ip_salt = "f1e2d3c4b5a69788"

[[project]]
id = 2
name = "any"
quota = { per_second = 100, burst = 100 }
keys = [{ public_key = "k2" }]
[project.filters]
default_noise = false
[project.privacy]
strip_query = true
client_ip = "full"

[[project]]
id = 3
name = "truncated"
quota = { per_second = 100, burst = 100 }
keys = [{ public_key = "k3" }]

[[project]]
id = 4
name = "dropped"
quota = { per_second = 100, burst = 100 }
keys = [{ public_key = "k4" }]
[project.privacy]
strip_fragment = true
client_ip = "drop"
"#;

const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024;
const KEYS: [&str; 6] = ["k1", "k2", "k3", "k4", "off", "gone"];

struct Fixture {
    snapshot: Snapshot,
    parsers: ParserPool,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        snapshot: Snapshot::from_toml(PROJECTS, None).expect("the fixed projects file is valid"),
        parsers: ParserPool::new(2, ParseLimits::default()),
    })
}

/// One request, decoded from the fuzzer's bytes.
struct Input<'a> {
    control: [u8; 8],
    query: &'a [u8],
    header_name: &'a [u8],
    header_value: &'a [u8],
    body: &'a [u8],
}

impl<'a> Input<'a> {
    fn read(data: &'a [u8]) -> Option<Self> {
        let (control, mut rest) = data.split_first_chunk::<8>()?;
        let mut string = || {
            let (&len, tail) = rest.split_first()?;
            let len = usize::from(len).min(tail.len());
            let (s, tail) = tail.split_at(len);
            rest = tail;
            Some(s)
        };
        let query = string()?;
        let header_name = string()?;
        let header_value = string()?;
        Some(Self {
            control: *control,
            query,
            header_name,
            header_value,
            body: rest,
        })
    }
}

fn compress(kind: u8, body: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::fast();
    let written = match kind {
        0 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|()| e.finish())
        }
        1 => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|()| e.finish())
        }
        _ => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|()| e.finish())
        }
    };
    written.expect("writing to a Vec cannot fail")
}

/// Builds the request; `None` when `http` itself refuses it (hyper would never hand it over).
fn request(input: &Input<'_>) -> Option<(Request<Bytes>, SocketAddr)> {
    let [method, path, project, key, encoding, headers, peer, _] = input.control;
    let method = match method % 5 {
        0 | 1 => Method::POST,
        2 => Method::OPTIONS,
        3 => Method::GET,
        _ => Method::from_bytes(input.header_name).ok()?,
    };
    let project = u64::from(project % 6);
    let key_at = usize::from(key) % (KEYS.len() + 2);
    let known_key = KEYS.get(key_at).copied();
    let extra_query = String::from_utf8_lossy(input.query);
    let path = match path % 6 {
        0 => format!("/api/{project}/security/"),
        1 => format!("/api/{project}/csp-report"),
        2 => format!("/api/{project}/security/{}/", known_key.unwrap_or("nope")),
        3 => format!("/api/{project}/security/{extra_query}"),
        4 => format!("/api/{project}/security"),
        _ => format!("/{extra_query}"),
    };
    let mut query = String::new();
    if key_at < KEYS.len() && path.ends_with("/security/") {
        query.push_str(&format!("sentry_key={}", KEYS[key_at]));
    }
    if key % 2 == 1 {
        query.push('&');
        query.push_str(&extra_query);
    }
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let mut builder = Request::builder().method(method).uri(uri);
    let body = match encoding % 8 {
        0 | 1 => input.body.to_vec(),
        2 => {
            builder = builder.header("content-encoding", "gzip");
            compress(0, input.body)
        }
        3 => {
            builder = builder.header("content-encoding", "deflate");
            compress(1, input.body)
        }
        4 => {
            builder = builder.header("content-encoding", "Deflate");
            compress(2, input.body)
        }
        5 => {
            // Claims gzip, sends the body as is: the bad-compression path.
            builder = builder.header("content-encoding", "x-gzip");
            input.body.to_vec()
        }
        6 => {
            builder = builder.header(
                "content-encoding",
                HeaderValue::from_bytes(input.header_value).ok()?,
            );
            input.body.to_vec()
        }
        _ => {
            builder = builder.header("content-encoding", "gzip");
            input.body.to_vec()
        }
    };
    if headers & 1 == 1 {
        let name = HeaderName::from_bytes(input.header_name).ok()?;
        let value = HeaderValue::from_bytes(input.header_value).ok()?;
        builder = builder.header(name, value);
    }
    if headers & 2 == 2 {
        let value = HeaderValue::from_bytes(input.header_value).ok()?;
        builder = builder.header("x-forwarded-for", value);
    }
    if headers & 4 == 4 {
        let auth = format!("Sentry sentry_key={}", known_key.unwrap_or("nope"));
        builder = builder.header("x-sentry-auth", auth);
    }
    if headers & 8 == 8 {
        let value = HeaderValue::from_bytes(input.header_value).ok()?;
        builder = builder.header("authorization", value);
    }
    let peer = match peer % 3 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, peer)), 40000),
        1 => SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(198, 51, 100, peer).to_ipv6_mapped()),
            40000,
        ),
        _ => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, u16::from(peer), 1, 2, 3, 4, 5)),
            40000,
        ),
    };
    let request = builder.body(Bytes::from(body)).ok()?;
    Some((request, peer))
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::read(data) else {
        return;
    };
    let Some((request, peer)) = request(&input) else {
        return;
    };
    let trust_forwarded_for = input.control[7] & 1 == 1;
    let fixture = fixture();

    let Some((project_id, path_key)) = routes::match_path(request.uri().path())
        .map(|path| (path.project_id, path.path_key.map(str::to_owned)))
    else {
        return; // 404
    };
    if request.method() != Method::POST {
        return; // 204 preflight or 405
    }
    let (parts, body) = request.into_parts();
    // Trust the fuzzed peer (or nobody): the walk must never panic, and without trust the
    // headers are ignored.
    let proxies = if trust_forwarded_for {
        let peer_net = client::parse_net(&peer.ip().to_canonical().to_string())
            .expect("an address is a network");
        client::TrustedProxies::new(vec![peer_net], false)
    } else {
        client::TrustedProxies::default()
    };
    let ip = proxies.client_ip(&parts.headers, peer);
    assert!(
        trust_forwarded_for || ip == peer.ip().to_canonical(),
        "client ip without trust must be the peer"
    );
    let query = auth::QueryParams::parse(parts.uri.query());
    for tag in [&query.environment, &query.release].into_iter().flatten() {
        assert!(tag.len() <= 200, "query tags are truncated");
    }
    let key = auth::find_key(path_key.as_deref(), &query, &parts.headers);
    let Ok(project) = auth::authorize(&fixture.snapshot, project_id, key) else {
        return;
    };
    assert_eq!(project.id, project_id);
    assert!(
        key.is_some_and(|k| ["k1", "k2", "k3", "k4"].contains(&k)),
        "only active keys authorise: {key:?}"
    );
    let Some(encoding) = Encoding::from_headers(&parts.headers) else {
        return; // 415
    };
    if body.len() > MAX_BODY_BYTES {
        return; // 413 (read_body's size cap)
    }
    let Ok(mut plain) = validate::decode(encoding, body, MAX_DECOMPRESSED_BYTES) else {
        return; // 400 bad compression or 413 decompressed too large
    };
    assert!(plain.len() <= MAX_DECOMPRESSED_BYTES);
    let Ok(parsed) = fixture.parsers.parse(&mut plain) else {
        return; // 400 malformed
    };
    let stored_ip = privacy::client_ip(&project.privacy, ip);
    match project.privacy.client_ip {
        IpPolicy::Drop => assert_eq!(stored_ip, None),
        IpPolicy::Full => assert_eq!(stored_ip, Some(ip.to_string())),
        IpPolicy::Truncate => {
            let kept: IpAddr = stored_ip
                .as_deref()
                .and_then(|s| s.parse().ok())
                .expect("a truncated ip is an ip");
            assert_eq!(kept, privacy::truncate(kept), "truncation is idempotent");
        }
        IpPolicy::Hash => {
            let hashed = stored_ip.as_deref().expect("hash keeps a value");
            assert!(hashed.len() == 16 && hashed.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!hashed.contains(&ip.to_string()));
        }
    }
    for mut report in parsed.items.into_iter().flatten() {
        let noise = match filter::judge(&project, &report) {
            filter::Verdict::Keep { noise } => noise,
            filter::Verdict::Filtered(_) | filter::Verdict::HostNotAllowed => continue,
        };
        privacy::apply(&project.privacy, &mut report);
        let spec = &project.privacy;
        if spec.drop_referrer {
            assert_eq!(report.referrer, None);
        }
        for url in [
            &report.document_url,
            &report.blocked_url,
            &report.source_file,
            &report.referrer,
        ]
        .into_iter()
        .flatten()
        {
            let authority = url
                .strip_prefix("//")
                .or_else(|| url.split_once("://").map(|(_, rest)| rest));
            if let Some(authority) = authority {
                let end = authority
                    .find(['/', '?', '#', '\\'])
                    .unwrap_or(authority.len());
                assert!(!authority[..end].contains('@'), "credentials kept: {url}");
            }
            if spec.strip_fragment {
                assert!(!url.contains('#'), "fragment kept: {url}");
            }
            if spec.strip_query {
                let end = url.find('#').unwrap_or(url.len());
                assert!(!url[..end].contains('?'), "query kept: {url}");
            }
        }
        let fingerprint = schemas::fingerprint(project.id, &report);
        let _ = schemas::dedup_key(fingerprint, stored_ip.as_deref().unwrap_or(""));
        let message = ReportMessage {
            v: MESSAGE_VERSION,
            id: "0193a1f0-0000-7000-8000-000000000000".into(),
            received_at_ms: 1_700_000_000_000,
            project_id: project.id,
            environment: query.environment.clone(),
            release: query.release.clone(),
            client_ip: stored_ip.clone(),
            request_user_agent: None,
            fingerprint: format!("{fingerprint:016x}"),
            noise: noise.map(|n| n.as_str().to_owned()),
            report,
        };
        let payload = serde_json::to_vec(&message).expect("messages serialise");
        let decoded = ReportMessage::decode(&payload).expect("own messages decode");
        assert_eq!(decoded, message);
    }
});
