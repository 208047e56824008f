//! The CSP test page for the real-browser tests: `page/page.html` violates its policy six ways
//! (`page/app.js` adds the eval), a tiny loopback server serves both (over TLS when asked), and
//! [`VIOLATIONS`] lists what Chromium reports. Ingest's and the end-to-end browser tests share it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::tls::SelfSigned;

/// The page, served at `/`.
pub const PAGE_HTML: &str = include_str!("../page/page.html");
/// Its same-origin script, served at `/app.js`.
pub const APP_JS: &str = include_str!("../page/app.js");

/// The page's policy, without its reporting directive (tests append `report-uri` or
/// `report-to`).
pub const POLICY: &str =
    "default-src 'self'; script-src 'self' 'report-sample'; style-src 'report-sample'; img-src 'self'";

/// Ingest's projects file for the browser tests: project 1, key `browser-key`. Noise filtering
/// is off: the inline violations' `source-file` is the page on 127.0.0.1, which the default
/// noise list drops (injectors report from localhost).
pub const PROJECTS: &str = r#"
[[project]]
id = 1
name = "browser"
quota = { per_second = 1000, burst = 1000 }
keys = [{ public_key = "browser-key" }]
filters = { default_noise = false }
"#;

/// What the page violates: (effective directive, directive family, blocked class keyword as in
/// `schemas::BlockedClass::as_str`).
pub const VIOLATIONS: [(&str, &str, &str); 6] = [
    ("style-src-elem", "style-src", "inline"),
    ("style-src-attr", "style-src", "inline"),
    ("script-src-elem", "script-src", "inline"),
    ("script-src", "script-src", "eval"),
    ("img-src", "img-src", "url"),
    ("script-src-elem", "script-src", "url"),
];

/// The prefix of the cross-origin URLs the page loads (and its CSP blocks before any fetch).
pub const BLOCKED_URL_PREFIX: &str = "https://127.0.0.2:9/blocked.";

/// Serve [`PAGE_HTML`] (with `headers`, each line ending in `\r\n`, added to its response) and
/// [`APP_JS`] on a loopback port, over TLS with `tls` when given, one task per connection, for
/// as long as the caller's runtime lives.
pub async fn serve(headers: String, tls: Option<&SelfSigned>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind page server")?;
    let addr = listener.local_addr().context("page server addr")?;
    let acceptor = tls.map(acceptor).transpose()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let headers = headers.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => answer(stream, &headers).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, &headers).await;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// TLS for the page server: the test certificate, HTTP/1.1 only (no ALPN `h2`).
fn acceptor(tls: &SelfSigned) -> anyhow::Result<TlsAcceptor> {
    let cert = CertificateDer::from(tls.cert_der.clone());
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).context("test key parses")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("ring supports the default versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("certificate and key match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Answer one request (`/`, `/app.js`, else 404) and close the connection.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: S, page_headers: &str) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return; // a speculative connection closed without a request
    }
    // Skip the request headers.
    let mut line = String::new();
    while reader.read_line(&mut line).await.is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, extra, body) = match path {
        "/" => (
            "200 OK",
            "text/html; charset=utf-8",
            page_headers,
            PAGE_HTML,
        ),
        "/app.js" => ("200 OK", "text/javascript", "", APP_JS),
        _ => ("404 Not Found", "text/plain", "", "not found"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
