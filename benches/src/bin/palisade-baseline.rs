//! `palisade-baseline`: the floor any HTTP edge pays. A minimal hyper 1 server on the same
//! runtime as ingest (`#[tokio::main]`: multi-threaded, one worker per core) and the same
//! connection handling (hyper-util `auto`: HTTP/1.1 keep-alive and h2c), that reads each
//! request's whole body and answers 204. Load it like ingest and compare CPU per request
//! (`deploy/scripts/baseline.sh`). Runs until SIGINT/SIGTERM.
//!
//! With `--kafka`, the floor of an edge that waits for Kafka: each body is also published, as it
//! came, through ingest's own `Publisher` (the same librdkafka producer settings, key, header
//! and wait for the acknowledgement; the `--kafka-*` flags are ingest's) and answered 202 once
//! acknowledged (503 when not). No authentication, limits, parsing, filtering, encoding or
//! metrics: what ingest spends beyond this floor is its own work.

use std::convert::Infallible;
use std::net::SocketAddr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ingest::publish::{KafkaConfig, OutgoingMessage, Publisher};

/// Ingest's allocator: the floor pays for its allocations (hyper's buffers, the body, librdkafka's
/// copy) the way ingest does, so the ratio between the two measures ingest's own work.
#[global_allocator]
static ALLOCATOR: ingest::Allocator = ingest::Allocator;

/// Minimal HTTP server answering 204 after reading the body.
#[derive(Debug, Parser)]
#[command(name = "palisade-baseline", about)]
struct Args {
    /// Listen address. Default `127.0.0.1:8081`.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// Largest body read, in bytes (then 413), as ingest's `--max-body-bytes`. Default 1048576.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Publish each body to Kafka and answer 202 once acknowledged (see the module docs).
    #[arg(long)]
    kafka: bool,
    #[command(flatten)]
    kafka_config: KafkaConfig,
}

/// What a request is answered with once its body is read.
struct Floor {
    limit: usize,
    publisher: Option<Publisher>,
    /// Source of distinct keys, as ingest's dedup keys spread reports over partitions.
    sequence: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!("palisade-baseline listening on {}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    let publisher = if args.kafka {
        Some(Publisher::new(&args.kafka_config)?)
    } else {
        None
    };
    let floor = Arc::new(Floor {
        limit: args.max_body_bytes,
        publisher,
        sequence: AtomicU64::new(0),
    });
    let shutdown = ingest::run::stop_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: keep serving the open connections.
                Err(_) => continue,
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let floor = Arc::clone(&floor);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, Arc::clone(&floor)));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    floor: Arc<Floor>,
) -> Result<Response<Empty<Bytes>>, Infallible> {
    let status = match Limited::new(request.into_body(), floor.limit)
        .collect()
        .await
    {
        Ok(body) => match &floor.publisher {
            None => {
                std::hint::black_box(body.to_bytes());
                StatusCode::NO_CONTENT
            }
            Some(publisher) => {
                let sequence = floor.sequence.fetch_add(1, Ordering::Relaxed);
                let message = OutgoingMessage {
                    key: format!("{:016x}", sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                    payload: body.to_bytes().to_vec(),
                };
                match publisher.publish(vec![message]).await {
                    Ok(()) => StatusCode::ACCEPTED,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        },
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}
