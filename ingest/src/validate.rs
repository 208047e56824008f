//! From request body to parsed reports: read it (size cap, read timeout), undo `gzip`/`deflate`
//! (decompressed-size cap), and parse it with a pooled [`schemas::Parser`].

use std::future::Future;
use std::io::Read;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::rejection::Rejection;

/// Size and time limits of a body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_body_bytes: usize,
    pub max_decompressed_bytes: usize,
    pub read_timeout: Duration,
}

/// Reads the whole body within the limits.
pub async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limits: BodyLimits,
) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return Err(Rejection::PayloadTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    let mut read = std::pin::pin!(read_frames(body, limits.max_body_bytes));
    // A body already received in full (keep-alive, a small report) is read at the first poll:
    // the read timeout's timer is set up only for a body still on its way.
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(result) => result,
        Poll::Pending => tokio::time::timeout(limits.read_timeout, read)
            .await
            .map_err(|_elapsed| Rejection::BodyTimeout)?,
    }
}

/// The data of `body`'s frames, refused as `PayloadTooLarge` as soon as they add up to more than
/// `max` bytes: what `http_body_util::Limited` + `collect()` did, without their boxed errors and
/// list of frames (about 700 instructions of every request, callgrind). Trailers are ignored.
async fn read_frames<B>(mut body: B, max: usize) -> Result<Bytes, Rejection>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    let mut received = Received::Nothing;
    let mut len = 0usize;
    // `is_end_stream` first: a body whose declared length has all arrived needs no poll to learn
    // that it ended (the trait promises `poll_frame` would give `None`).
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame.map_err(Rejection::BodyRead)?.into_data() else {
            continue; // trailers
        };
        if data.len() > max - len {
            return Err(Rejection::PayloadTooLarge { limit: max });
        }
        len += data.len();
        received = received.and(data);
    }
    Ok(received.into_bytes())
}

/// The data frames of a body read so far.
enum Received {
    Nothing,
    /// One frame, the usual report: its bytes are the body, not copied.
    One(Bytes),
    /// Several frames, copied into one buffer.
    Many(Vec<u8>),
}

impl Received {
    fn and(self, data: Bytes) -> Self {
        match self {
            Self::Nothing => Self::One(data),
            Self::One(head) => {
                let mut all = Vec::with_capacity(head.len() + data.len());
                all.extend_from_slice(&head);
                all.extend_from_slice(&data);
                Self::Many(all)
            }
            Self::Many(mut all) => {
                all.extend_from_slice(&data);
                Self::Many(all)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Nothing => Bytes::new(),
            Self::One(data) => data,
            Self::Many(all) => Bytes::from(all),
        }
    }
}

/// The body's content encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    /// From the `Content-Encoding` header; `None` for anything we do not decode (415),
    /// including stacked encodings (`gzip, gzip`, or the header twice): one layer is decoded,
    /// never more, so a bomb cannot hide inside a bomb.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
        let Some(value) = values.next() else {
            return Some(Self::Identity);
        };
        if values.next().is_some() {
            return None;
        }
        let value = value.to_str().ok()?.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Some(Self::Identity)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Some(Self::Gzip)
        } else if value.eq_ignore_ascii_case("deflate") {
            Some(Self::Deflate)
        } else {
            None
        }
    }
}

/// The body as plain bytes, ready for the parser (which mutates it in place).
pub fn decode(
    encoding: Encoding,
    body: Bytes,
    max_decompressed: usize,
) -> Result<Vec<u8>, Rejection> {
    decode_scanned(encoding, body, max_decompressed, None)
}

/// [`decode`], feeding the inflated bytes to `limits`' [`schemas::parse::Scan`] as they come:
/// a body with too many batch items or JSON values (a `[0,0,...]` bomb) is refused after its
/// first inflated chunk over the limit, not after `max_decompressed` bytes.
pub fn decode_scanned(
    encoding: Encoding,
    body: Bytes,
    max_decompressed: usize,
    limits: Option<&schemas::ParseLimits>,
) -> Result<Vec<u8>, Rejection> {
    let scan = || limits.map(schemas::parse::Scan::new);
    match encoding {
        Encoding::Identity => Ok(Vec::from(body)),
        Encoding::Gzip => inflate(
            flate2::read::MultiGzDecoder::new(&body[..]),
            max_decompressed,
            scan(),
        ),
        // HTTP `deflate` is zlib-wrapped, but some clients send raw deflate: try both.
        Encoding::Deflate => inflate(
            flate2::read::ZlibDecoder::new(&body[..]),
            max_decompressed,
            scan(),
        )
        .or_else(|first| match first {
            Rejection::BadCompression(_) => inflate(
                flate2::read::DeflateDecoder::new(&body[..]),
                max_decompressed,
                scan(),
            ),
            other => Err(other),
        }),
    }
}

/// Bytes inflated (and scanned) per read.
const INFLATE_CHUNK_BYTES: usize = 16 * 1024;

fn inflate(
    reader: impl Read,
    max: usize,
    mut scan: Option<schemas::parse::Scan>,
) -> Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    // Read one byte past the cap to tell "exactly at the cap" from "over it".
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = reader.take(cap);
    let mut chunk = vec![0u8; INFLATE_CHUNK_BYTES];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Rejection::BadCompression(error)),
        };
        if let Some(scan) = scan.as_mut() {
            scan.feed(&chunk[..n]).map_err(Rejection::Malformed)?;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    if out.len() > max {
        return Err(Rejection::DecompressedTooLarge { limit: max });
    }
    Ok(out)
}

/// A bounded pool of parsers, so simd-json's scratch buffers are reused across requests.
/// At most `capacity` idle parsers are kept; under more concurrency extra parsers are created
/// and dropped after use. A parser that parsed a body over `schemas::parse::RETAINED_BUFFER_BYTES`
/// replaces its buffers before it comes back, so the idle pool holds at most `capacity` times
/// the buffers of a 64 KiB body, whatever bodies it has seen.
#[derive(Debug)]
pub struct ParserPool {
    idle: Mutex<Vec<schemas::Parser>>,
    capacity: usize,
    limits: schemas::ParseLimits,
}

impl ParserPool {
    pub fn new(capacity: usize, limits: schemas::ParseLimits) -> Self {
        Self {
            idle: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            limits,
        }
    }

    /// [`decode_scanned`] with this pool's parse limits.
    pub fn decode(
        &self,
        encoding: Encoding,
        body: Bytes,
        max_decompressed: usize,
    ) -> Result<Vec<u8>, Rejection> {
        decode_scanned(encoding, body, max_decompressed, Some(&self.limits))
    }

    /// Parses `body` with a pooled parser.
    pub fn parse(&self, body: &mut [u8]) -> Result<schemas::Parsed, schemas::ParseError> {
        let mut parser = self.take();
        let result = parser.parse(body);
        self.give_back(parser);
        result
    }

    /// Parses `body` with a pooled parser, the reports' text borrowed from `body`
    /// ([`schemas::Parser::parse_borrowed`]).
    pub fn parse_borrowed<'b>(
        &self,
        body: &'b mut [u8],
    ) -> Result<schemas::parse::ParsedBody<'b>, schemas::ParseError> {
        let mut parser = self.take();
        let result = parser.parse_borrowed(body);
        self.give_back(parser);
        result
    }

    fn take(&self) -> schemas::Parser {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        pooled.unwrap_or_else(|| schemas::Parser::new(self.limits))
    }

    fn give_back(&self, parser: schemas::Parser) {
        // A poisoned lock only means another request panicked mid-push; dropping the parser is fine.
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.capacity {
                idle.push(parser);
            }
        }
    }

    /// Idle parsers (for tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    type Frames = std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, hyper::Error>>;

    /// A body of `frames`, as hyper's `Incoming` would give them (a trailers frame is `None`).
    fn body(frames: &[Option<&[u8]>]) -> http_body_util::StreamBody<futures::stream::Iter<Frames>> {
        let frames: Vec<_> = frames
            .iter()
            .map(|frame| {
                Ok(match frame {
                    Some(data) => hyper::body::Frame::data(Bytes::copy_from_slice(data)),
                    None => hyper::body::Frame::trailers(HeaderMap::new()),
                })
            })
            .collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames))
    }

    fn read(frames: &[Option<&[u8]>], max: usize) -> Result<Bytes, &'static str> {
        futures::executor::block_on(read_frames(body(frames), max)).map_err(|r| r.reason())
    }

    /// What `read_body` did before `read_frames`: `Limited` + `collect()`, the reference.
    fn read_before(frames: &[Option<&[u8]>], max: usize) -> Result<Bytes, &'static str> {
        futures::executor::block_on(http_body_util::Limited::new(body(frames), max).collect())
            .map(|collected| collected.to_bytes())
            .map_err(|_length_limit| "body_too_large")
    }

    #[test]
    fn frames_are_joined_up_to_the_limit_and_refused_past_it() {
        let frames = [Some(&b"{\"a\":"[..]), None, Some(b""), Some(b"1}")];
        assert_eq!(
            read(&frames, 7).unwrap(),
            &b"{\"a\":1}"[..],
            "exactly at the limit"
        );
        let refused = futures::executor::block_on(read_frames(body(&frames), 6)).unwrap_err();
        assert_eq!(
            (refused.status().as_u16(), refused.reason()),
            (413, "body_too_large")
        );
        assert!(matches!(refused, Rejection::PayloadTooLarge { limit: 6 }));
        assert_eq!(
            read(&[], 0).unwrap(),
            Bytes::new(),
            "no frames, an empty body"
        );
        assert_eq!(read(&[Some(b"x")], 0), Err("body_too_large"));
    }

    /// A body of one frame (a report on a keep-alive connection) is that frame, not a copy.
    #[test]
    fn one_frame_is_not_copied() {
        let frame = Bytes::from_static(b"{\"csp-report\":{}}");
        let body = http_body_util::Full::new(frame.clone())
            .map_err(|never| -> hyper::Error { match never {} });
        let read = futures::executor::block_on(read_frames(body, 1024)).unwrap();
        assert_eq!(read.as_ptr(), frame.as_ptr());
    }

    proptest::proptest! {
        /// Any frames (data of any length, trailers) under any limit read as `Limited` +
        /// `collect()` read them: the same bytes, or the same refusal.
        #[test]
        fn frames_read_as_limited_collect_read_them(
            frames in proptest::collection::vec(
                proptest::option::weighted(0.9, proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
                0..6,
            ),
            max in 0usize..150,
        ) {
            let frames: Vec<Option<&[u8]>> = frames.iter().map(|f| f.as_deref()).collect();
            proptest::prop_assert_eq!(read(&frames, max), read_before(&frames, max));
        }
    }

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(Encoding::from_headers(&h), Some(Encoding::Identity));
        for (value, want) in [
            ("gzip", Some(Encoding::Gzip)),
            ("Deflate", Some(Encoding::Deflate)),
            ("br", None),
            ("identity", Some(Encoding::Identity)),
        ] {
            h.insert(http::header::CONTENT_ENCODING, value.parse().unwrap());
            assert_eq!(Encoding::from_headers(&h), want, "{value}");
        }
        h.insert(
            http::header::CONTENT_ENCODING,
            "gzip, gzip".parse().unwrap(),
        );
        assert_eq!(Encoding::from_headers(&h), None, "stacked in one line");
        h.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        h.append(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(Encoding::from_headers(&h), None, "stacked in two lines");
    }

    #[test]
    fn decompression_is_capped() {
        let data = vec![b'a'; 1000];
        assert_eq!(decode(Encoding::Gzip, gzip(&data), 1000).unwrap(), data);
        let err = decode(Encoding::Gzip, gzip(&data), 999).unwrap_err();
        assert_eq!(err.reason(), "decompressed_too_large");
        let err = decode(Encoding::Gzip, Bytes::from_static(b"not gzip"), 1000).unwrap_err();
        assert_eq!(err.reason(), "bad_compression");
    }

    /// Regression (RELIABILITY.md, array bombs): a gzip body inflating to megabytes of
    /// `[0,0,...]` is refused as `batch_too_long` while inflating, holding one chunk.
    #[test]
    fn array_bomb_is_refused_while_inflating() {
        let mut bomb = b"[".to_vec();
        bomb.extend(b"0,".repeat(2 << 20));
        bomb.extend_from_slice(b"0]");
        let pool = ParserPool::new(1, schemas::ParseLimits::default());
        let err = pool
            .decode(Encoding::Gzip, gzip(&bomb), 8 << 20)
            .unwrap_err();
        assert_eq!(err.reason(), "batch_too_long");
        assert_eq!(err.status(), 413);
        // Without the scan the same body inflates whole.
        assert_eq!(
            decode(Encoding::Gzip, gzip(&bomb), 8 << 20).unwrap().len(),
            bomb.len()
        );
    }

    #[test]
    fn deflate_accepts_zlib_and_raw() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"{}").unwrap();
        assert_eq!(
            decode(Encoding::Deflate, Bytes::from(z.finish().unwrap()), 10).unwrap(),
            b"{}"
        );
        let mut r = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        r.write_all(b"{}").unwrap();
        assert_eq!(
            decode(Encoding::Deflate, Bytes::from(r.finish().unwrap()), 10).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn pool_is_bounded_and_reused() {
        let pool = ParserPool::new(1, schemas::ParseLimits::default());
        let _ = pool.parse(&mut b"{}".to_vec());
        let _ = pool.parse(&mut b"{}".to_vec());
        assert_eq!(pool.idle(), 1);
    }
}
