//! The HTTP side of the load generator: hyper 1 client connections in three modes.
//!
//! - [`Mode::KeepAlive`]: each worker holds one HTTP/1.1 connection and reuses it (reconnecting
//!   after a transport error), like a browser's pooled connection to a report endpoint.
//! - [`Mode::NewConnection`]: each request opens a new TCP connection and closes it after the
//!   answer (`Connection: close`), so the server pays accept + teardown every time.
//! - [`Mode::H2`]: HTTP/2 with prior knowledge over cleartext (h2c; ingest's hyper-util `auto`
//!   server detects the preface). Workers share `h2_connections` connections round-robin, each
//!   carrying many concurrent streams, like browsers multiplexing one origin.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    KeepAlive,
    NewConnection,
    H2,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeepAlive => "keepalive",
            Self::NewConnection => "new-connection",
            Self::H2 => "h2",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keepalive" | "keep-alive" => Ok(Self::KeepAlive),
            "new-connection" => Ok(Self::NewConnection),
            "h2" | "h2c" => Ok(Self::H2),
            other => Err(format!(
                "unknown mode {other:?} (keepalive, new-connection, h2)"
            )),
        }
    }
}

/// A transport failure: connecting, the HTTP exchange or reading the answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connect")]
    Connect(#[source] std::io::Error),
    #[error("http handshake")]
    Handshake(#[source] hyper::Error),
    #[error("request")]
    Request(#[source] hyper::Error),
    #[error("building the request")]
    Build(#[source] http::Error),
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// Path and query (`/api/1/security/?sentry_key=k`).
    pub path: &'a Uri,
    pub content_type: &'static str,
    pub forwarded_for: Option<HeaderValue>,
    pub body: Bytes,
}

/// The answer: status and body (small: ingest answers a few dozen bytes).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// A connected HTTP/2 session, shareable between workers.
#[derive(Debug, Clone)]
pub struct H2Session(http2::SendRequest<Full<Bytes>>);

impl H2Session {
    pub async fn connect(addr: SocketAddr) -> Result<Self, TransportError> {
        let stream = connect_tcp(addr).await?;
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(TransportError::Handshake)?;
        tokio::spawn(connection);
        Ok(Self(sender))
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// One worker's connection state.
#[derive(Debug)]
pub struct Client {
    mode: Mode,
    addr: SocketAddr,
    /// `host:port` for the `Host` header and the h2 `:authority`.
    authority: HeaderValue,
    http1: Option<http1::SendRequest<Full<Bytes>>>,
    h2: Option<H2Session>,
}

impl Client {
    /// A client for `addr`; HTTP/2 workers pass the shared session they use.
    pub fn new(mode: Mode, addr: SocketAddr, h2: Option<H2Session>) -> Self {
        let authority = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("127.0.0.1"));
        Self {
            mode,
            addr,
            authority,
            http1: None,
            h2,
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, outgoing: Outgoing<'_>) -> Result<Answer, TransportError> {
        let result = match self.mode {
            Mode::KeepAlive => self.send_http1(outgoing, true).await,
            Mode::NewConnection => self.send_http1(outgoing, false).await,
            Mode::H2 => self.send_h2(outgoing).await,
        };
        if result.is_err() {
            // Start afresh on the next request.
            self.http1 = None;
        }
        result
    }

    async fn send_http1(
        &mut self,
        outgoing: Outgoing<'_>,
        keep_alive: bool,
    ) -> Result<Answer, TransportError> {
        let reusable = match self.http1.take() {
            Some(mut sender) if keep_alive => sender.ready().await.is_ok().then_some(sender),
            _ => None,
        };
        let mut sender = match reusable {
            Some(sender) => sender,
            None => {
                let stream = connect_tcp(self.addr).await?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(TransportError::Handshake)?;
                tokio::spawn(connection);
                sender
            }
        };
        let mut request = self.request(outgoing, outgoing_uri_path)?;
        if !keep_alive {
            request
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let answer = read(sender.send_request(request).await).await?;
        if keep_alive {
            self.http1 = Some(sender);
        }
        Ok(answer)
    }

    async fn send_h2(&mut self, outgoing: Outgoing<'_>) -> Result<Answer, TransportError> {
        let session = match self.h2.take() {
            Some(session) if !session.is_closed() => session,
            _ => H2Session::connect(self.addr).await?,
        };
        let authority = self.authority.clone();
        let request = self.request(outgoing, |path| {
            Uri::builder()
                .scheme("http")
                .authority(authority.as_bytes())
                .path_and_query(path.path_and_query().map_or("/", |p| p.as_str()))
                .build()
        })?;
        let mut sender = session.0.clone();
        self.h2 = Some(session);
        read(sender.send_request(request).await).await
    }

    fn request(
        &self,
        outgoing: Outgoing<'_>,
        uri: impl FnOnce(&Uri) -> Result<Uri, http::Error>,
    ) -> Result<Request<Full<Bytes>>, TransportError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri(outgoing.path).map_err(TransportError::Build)?)
            .header(header::CONTENT_TYPE, outgoing.content_type);
        if self.mode != Mode::H2 {
            builder = builder.header(header::HOST, self.authority.clone());
        }
        if let Some(ip) = outgoing.forwarded_for {
            builder = builder.header("x-forwarded-for", ip);
        }
        builder
            .body(Full::new(outgoing.body))
            .map_err(TransportError::Build)
    }
}

fn outgoing_uri_path(path: &Uri) -> Result<Uri, http::Error> {
    Ok(path.clone())
}

async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, TransportError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(TransportError::Connect)?;
    // Small requests: do not let Nagle hold them back.
    stream.set_nodelay(true).map_err(TransportError::Connect)?;
    Ok(stream)
}

async fn read(
    response: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<Answer, TransportError> {
    let response = response.map_err(TransportError::Request)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(TransportError::Request)?
        .to_bytes();
    Ok(Answer { status, body })
}
