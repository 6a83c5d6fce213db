//! Reading a request body under a size limit, for every server of nemutator
//! (the webhook's `/mutate`, the agent's `/api/v1/profiles`).
//!
//! A body announced (`content-length`) or found larger than the limit is an
//! error answered with 413, and it is not simply dropped: its rest is read
//! and thrown away in the background, so that the request ends the way the
//! client expects. Dropping it would reset the HTTP/2 stream after the
//! response (`RST_STREAM(NO_ERROR)`, which RFC 9113 allows but which clients
//! such as curl 7.x report as a stream error instead of showing the 413) or
//! close an HTTP/1.1 connection while the client is still writing. Only a
//! bounded amount is discarded ([`DISCARD_FACTOR`] times the limit in all,
//! within [`DISCARD_TIME`]); a larger body is cut off as before.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use nemutator_core::server::body::{read_limited, BodyError};
//!
//! let req = http::Request::new(Full::new(Bytes::from_static(b"{}")));
//! assert_eq!(read_limited(req, 16).await.ok(), Some(Bytes::from_static(b"{}")));
//!
//! let req = http::Request::new(Full::new(Bytes::from(vec![b'x'; 17])));
//! let err = read_limited(req, 16).await.unwrap_err();
//! assert!(matches!(err, BodyError::TooLarge { limit: 16 }));
//! assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
//! # });
//! ```

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, Request, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An oversized body is read to its end (and thrown away) when it is at most
/// this many times the limit; a larger one is cut off.
pub const DISCARD_FACTOR: u64 = 2;

/// How long the rest of an oversized body may take to arrive before it is cut
/// off.
pub const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Why a request body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit (413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read (400).
    #[error("could not read the request body: {0}")]
    Read(String),
}

impl BodyError {
    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The declared `content-length`, if any and valid.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The whole body of `req`, at most `limit` bytes. An oversized body is an
/// error at once when its `content-length` says so, else as soon as `limit`
/// is passed; either way its rest is discarded in the background (see the
/// module documentation).
pub async fn read_limited<B>(req: Request<B>, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let declared = content_length(req.headers());
    let mut body = req.into_body();
    let too_large = BodyError::TooLarge { limit };
    let limit64 = limit as u64;
    if declared.is_some_and(|n| n > limit64) {
        discard(body, declared, 0, limit64);
        return Err(too_large);
    }
    // The usual body is one frame: kept as it came, without a copy.
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.into().to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        read += data.len() as u64;
        if read > limit64 {
            discard(body, declared, read, limit64);
            return Err(too_large);
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(f.len() + data.len());
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                more = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, more) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Read the rest of an oversized body (of which `read` bytes are read) and
/// throw it away, in a task of its own, when it is small enough; else (or
/// outside a Tokio runtime) drop it, which cuts the request off.
fn discard<B>(mut body: B, declared: Option<u64>, read: u64, limit: u64)
where
    B: Body + Send + Unpin + 'static,
{
    let most = limit.saturating_mul(DISCARD_FACTOR);
    if declared.is_some_and(|n| n > most) || body.is_end_stream() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let rest = async {
            let mut read = read;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.remaining() as u64);
                if read > most {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_TIME, rest).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    /// A body of `chunks` frames of `size` bytes that counts what is read.
    fn mk_counted(
        chunks: usize,
        size: usize,
    ) -> (
        impl Body<Data = Bytes, Error = std::convert::Infallible> + Send + Unpin + 'static,
        Arc<AtomicU64>,
    ) {
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        let frames = futures_util::stream::iter((0..chunks).map(move |_| {
            counter.fetch_add(size as u64, Ordering::SeqCst);
            Ok(Frame::data(Bytes::from(vec![b'x'; size])))
        }));
        (StreamBody::new(frames), read)
    }

    fn mk_req<B>(body: B, declared: Option<u64>) -> Request<B> {
        let mut req = Request::new(body);
        if let Some(n) = declared {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, http::HeaderValue::from(n));
        }
        req
    }

    async fn settle(read: &AtomicU64, want: u64) -> u64 {
        for _ in 0..100 {
            if read.load(Ordering::SeqCst) >= want {
                break;
            }
            tokio::task::yield_now().await;
        }
        read.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn joins_frames_and_reads_up_to_the_limit() {
        let (body, _) = mk_counted(4, 4);
        let got = read_limited(mk_req(body, None), 16).await;
        assert_eq!(got, Ok(Bytes::from(vec![b'x'; 16])));
        let empty = read_limited(mk_req(Full::new(Bytes::new()), Some(0)), 16).await;
        assert_eq!(empty, Ok(Bytes::new()));
    }

    #[tokio::test]
    async fn an_announced_oversized_body_is_refused_and_discarded() {
        let (body, read) = mk_counted(5, 4);
        let got = read_limited(mk_req(body, Some(20)), 16).await;
        assert_eq!(got, Err(BodyError::TooLarge { limit: 16 }));
        assert_eq!(settle(&read, 20).await, 20, "the rest is read to its end");
    }

    #[tokio::test]
    async fn an_unannounced_oversized_body_is_refused_and_discarded() {
        let (body, read) = mk_counted(6, 4);
        let got = read_limited(mk_req(body, None), 16).await;
        assert_eq!(got, Err(BodyError::TooLarge { limit: 16 }));
        assert_eq!(settle(&read, 24).await, 24);
    }

    #[tokio::test]
    async fn a_much_larger_body_is_cut_off() {
        // Announced beyond DISCARD_FACTOR times the limit: not read at all.
        let (body, read) = mk_counted(100, 4);
        let got = read_limited(mk_req(body, Some(400)), 16).await;
        assert_eq!(got, Err(BodyError::TooLarge { limit: 16 }));
        assert_eq!(settle(&read, 1).await, 0);
        // Unannounced: read until it passes that bound, then dropped.
        let (body, read) = mk_counted(100, 4);
        let _ = read_limited(mk_req(body, None), 16).await;
        let most = 16 * DISCARD_FACTOR;
        assert_eq!(settle(&read, most + 4).await, most + 4);
    }

    /// A body whose frames fail.
    struct Failing;

    impl Body for Failing {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
        }
    }

    #[tokio::test]
    async fn a_broken_body_is_a_400() {
        let got = read_limited(mk_req(Failing, None), 16).await;
        let err = got.err().unwrap_or(BodyError::TooLarge { limit: 0 });
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.to_string(),
            "could not read the request body: connection reset"
        );
    }
}
