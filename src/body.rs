//! The response body type shared by every layer, and bounded collection of request bodies.

use std::convert::Infallible;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use tokio::time::Sleep;

/// Every response body the relay sends. Its error type is `Infallible`: failures inside a body are
/// turned into in-band SSE error events before they reach hyper, so a connection is never cut.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The content types of the relay's own bodies, as consts. `HeaderValue::from_static` checks each
/// byte, and a call outside a const is folded only where the optimiser chooses to: the plain
/// release build made that check on every non-stream response.
pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const TEXT_EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// Why a body could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Read(String),
    #[error("no data for {0:?}")]
    Idle(Duration),
}

/// Collects a body into one buffer, failing as soon as it grows past `limit` so a huge upload
/// cannot exhaust memory.
pub async fn collect_limited<B>(body: B, limit: usize) -> Result<Bytes, CollectError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    collect(body, limit, None).await
}

/// [`collect_limited`], failing with [`CollectError::Idle`] when the body stalls for `idle`
/// between frames: an upstream that sent its headers and then stopped is named as such, not
/// left to the request's much longer total limit.
pub async fn collect_limited_idle<B>(body: B, limit: usize, idle: Duration) -> Result<Bytes, CollectError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    collect(body, limit, Some(idle)).await
}

/// As much of a body as arrives, up to `limit` bytes, and what stopped it short, if anything:
/// the start of an error answer says what went wrong even when the rest is too long or never
/// comes.
pub async fn collect_partial<B>(body: B, limit: usize) -> (Bytes, Option<CollectError>)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = match frame.map(http_body::Frame::into_data) {
            Ok(Ok(data)) => data,
            Ok(Err(_trailers)) => continue,
            Err(error) => return (read.freeze(), Some(CollectError::Read(error.to_string()))),
        };
        let room = limit - read.len();
        if data.len() > room {
            read.extend_from_slice(&data[..room]);
            return (read.freeze(), Some(CollectError::TooLarge { limit }));
        }
        read.extend_from_slice(&data);
    }
    (read.freeze(), None)
}

async fn collect<B>(body: B, limit: usize, idle: Option<Duration>) -> Result<Bytes, CollectError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(CollectError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    // Armed only when a read has to wait, so a body that is already in (the common case)
    // costs no clock read and no timer.
    let mut stall = std::pin::pin!(None::<Sleep>);
    let mut progressed = true;
    let mut next_frame = std::future::poll_fn(|cx| {
        // hyper's server wakes itself when its chunk is taken; at the end of the body that
        // wake-up is for a sender already gone.
        let polled = crate::wake::hold(|| {
            let polled = body.as_mut().poll_frame(cx);
            let finished = matches!(polled, Poll::Ready(None)) || body.is_end_stream();
            (polled, !finished)
        });
        if polled.is_ready() {
            progressed = true;
            return polled.map(Ok);
        }
        let Some(idle) = idle else { return Poll::Pending };
        if std::mem::take(&mut progressed) {
            stall.set(Some(tokio::time::sleep(idle)));
        }
        match stall.as_mut().as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(CollectError::Idle(idle))),
            _ => Poll::Pending,
        }
    });
    while let Some(frame) = (&mut next_frame).await? {
        let frame = frame.map_err(|e| CollectError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        let total = first.as_ref().map_or(0, Bytes::len) + rest.len() + data.len();
        if total > limit {
            return Err(CollectError::TooLarge { limit });
        }
        // A body that arrives in one frame (the common case) is kept without a copy.
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(head) = first.take() {
                    rest.extend_from_slice(&head);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(match first {
        Some(head) if rest.is_empty() => head,
        _ => rest.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunked(parts: &[&'static str]) -> impl http_body::Body<Data = Bytes, Error = Infallible> {
        let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> =
            parts.iter().map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes())))).collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn collects_many_frames_in_order() {
        let body = collect_limited(chunked(&["ab", "cd", "e"]), 10).await.unwrap();
        assert_eq!(&body[..], b"abcde");
    }

    /// One frame, then nothing: the stream never ends.
    fn stalls_after(part: &'static str) -> impl http_body::Body<Data = Bytes, Error = Infallible> {
        let first = futures_util::stream::iter([Ok(http_body::Frame::data(Bytes::from_static(part.as_bytes())))]);
        StreamBody::new(futures_util::StreamExt::chain(first, futures_util::stream::pending()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_after_the_idle_limit() {
        let started = tokio::time::Instant::now();
        let err = collect_limited_idle(stalls_after("{\"id\":"), 100, Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, CollectError::Idle(idle) if idle == Duration::from_secs(2)), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn frames_within_the_idle_limit_are_collected() {
        let frames = futures_util::StreamExt::then(futures_util::stream::iter(["ab", "cd", "e"]), |part| async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(part.as_bytes())))
        });
        let body = collect_limited_idle(StreamBody::new(frames), 10, Duration::from_secs(2)).await.unwrap();
        assert_eq!(&body[..], b"abcde", "each gap is under the limit, though the whole body takes longer");
    }

    #[tokio::test]
    async fn rejects_bodies_over_the_limit() {
        let err = collect_limited(chunked(&["abc", "def"]), 5).await.unwrap_err();
        assert!(matches!(err, CollectError::TooLarge { limit: 5 }));
    }
}
