//! Reading a request body under a size limit without resetting the client's connection.
//!
//! A server that answers `413` while the client is still sending closes a socket with unread
//! bytes in it; the kernel then resets the connection, and the reset can overtake the `413`
//! on its way to the client, which sees only a dropped connection. [`read_body`] therefore
//! reads (and discards) an oversized body up to a bound before it reports it as too large,
//! so the answer arrives; only a body beyond that bound is cut off.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, header};
use http_body::Body;
use http_body_util::BodyExt;

/// How many times the limit an oversized body is read and discarded before it is refused.
pub const OVERSIZED_DRAIN_FACTOR: usize = 8;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyReadError {
    /// The body (or its declared `Content-Length`) is longer than the limit.
    #[error("the request body is longer than the limit")]
    TooLarge,
    /// The transport failed while the body was read.
    #[error("the request body could not be read")]
    Unreadable,
}

/// Reads `body` if it is at most `max` bytes long.
///
/// A longer body is [`BodyReadError::TooLarge`], reported after reading and discarding it up
/// to [`OVERSIZED_DRAIN_FACTOR`] × `max` bytes in all; one whose `Content-Length` already
/// says it is longer than that is refused unread. Nothing beyond `max` bytes is ever kept in
/// memory. Bound the time it may take with the server's request timeout.
pub async fn read_body<B>(body: B, headers: &HeaderMap, max: usize) -> Result<Bytes, BodyReadError>
where
    B: Body,
{
    let drain_cap = max.saturating_mul(OVERSIZED_DRAIN_FACTOR);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_cap as u64) {
        return Err(BodyReadError::TooLarge);
    }
    let keep = declared.is_none_or(|n| n <= max as u64);
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyReadError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            // Trailers: nothing the host is handed.
            continue;
        };
        seen = seen.saturating_add(data.remaining());
        if seen > drain_cap {
            return Err(BodyReadError::TooLarge);
        }
        if keep && seen <= max {
            collected.extend_from_slice(data.chunk());
        }
    }
    if !keep || seen > max {
        return Err(BodyReadError::TooLarge);
    }
    Ok(collected.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    /// `chunks` data frames of `size` bytes each, no declared length.
    struct Chunked {
        left: usize,
        size: usize,
    }

    impl Body for Chunked {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            self.left -= 1;
            let frame = http_body::Frame::data(Bytes::from(vec![b'x'; self.size]));
            std::task::Poll::Ready(Some(Ok(frame)))
        }
    }

    fn chunked(chunks: usize, size: usize) -> Chunked {
        Chunked { left: chunks, size }
    }

    #[test]
    fn within_the_limit_is_read_whole() {
        let body = block_on(read_body(chunked(4, 100), &HeaderMap::new(), 400));
        assert_eq!(body.map(|b| b.len()), Ok(400));
        let empty = block_on(read_body(Full::new(Bytes::new()), &HeaderMap::new(), 0));
        assert_eq!(empty.map(|b| b.len()), Ok(0));
    }

    #[test]
    fn over_the_limit_is_too_large_whether_declared_or_not() {
        assert_eq!(
            block_on(read_body(chunked(5, 100), &HeaderMap::new(), 400)),
            Err(BodyReadError::TooLarge)
        );
        // Far beyond the drain bound: cut off, still too large.
        assert_eq!(
            block_on(read_body(chunked(100, 100), &HeaderMap::new(), 400)),
            Err(BodyReadError::TooLarge)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_LENGTH,
            http::HeaderValue::from_static("401"),
        );
        assert_eq!(
            block_on(read_body(chunked(4, 100), &headers, 400)),
            Err(BodyReadError::TooLarge)
        );
        headers.insert(
            header::CONTENT_LENGTH,
            http::HeaderValue::from_static("999999"),
        );
        assert_eq!(
            block_on(read_body(chunked(1, 1), &headers, 400)),
            Err(BodyReadError::TooLarge)
        );
    }
}
