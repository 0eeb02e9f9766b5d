//! Request ids: the client's `x-request-id` when it sends one, else a fresh random id; set on
//! the request for the layers below and echoed on the response.
//!
//! One layer for both directions, and the id travels in the request's headers only. tower-http's
//! pair (`SetRequestId` and `PropagateRequestId`) also kept a copy in each message's extensions,
//! whose first insert allocates the map, its table and a box: six allocations per request for a
//! value the access log's record already carries, 2,300 of the relay's 41,000 instructions per
//! non-streamed request (bench/callgrind.sh).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The header carrying the request id both ways.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Adds [`SetRequestId`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId { inner }
    }
}

/// Gives every request an `x-request-id` and every response the same one.
#[derive(Debug, Clone)]
pub struct SetRequestId<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for SetRequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(REQUEST_ID) {
            Some(sent) if usable(sent) => sent.clone(),
            _ => {
                let made = random_id();
                request.headers_mut().insert(REQUEST_ID, made.clone());
                made
            }
        };
        RequestIdFuture { inner: self.inner.call(request), id: Some(id) }
    }
}

pin_project! {
    /// The response future of [`SetRequestId`]: puts the id on the response.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

/// An id like `req_3f9a0c4e5b6d7e8f9a0b1c2d`: 96 random bits as 24 hex digits, written directly
/// because this runs on every request without one.
pub fn random_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id: u128 = rand::random::<u128>() >> 32;
    let mut text = *b"req_000000000000000000000000";
    for (i, digit) in text[4..].iter_mut().enumerate() {
        *digit = HEX[((id >> (4 * (23 - i))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
}

/// Longest request id the relay takes from a client.
const MAX_LEN: usize = 128;

/// Whether a client's id is taken as sent: short, and only characters that ids are made of
/// (UUIDs, `req_…`, base64), so that it cannot forge fields in a log line or fill one with
/// kilobytes. Any other id is replaced by a fresh one, which the response carries.
fn usable(sent: &HeaderValue) -> bool {
    let id = sent.as_bytes();
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@'))
}

/// The request id of a request, after [`SetRequestId`] has run.
pub fn of<B>(request: &Request<B>) -> String {
    request.headers().get(REQUEST_ID).map(text).unwrap_or_default()
}

/// A request id header as text, at most [`MAX_LEN`] bytes.
pub fn text(value: &HeaderValue) -> String {
    // `to_str` only accepts visible ASCII, so any byte offset is a character boundary.
    value.to_str().map(|id| id[..id.len().min(MAX_LEN)].to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    /// Runs one request through the layer over a service that answers with the id it was given.
    async fn through(request: Request<()>) -> (Option<HeaderValue>, Response<()>) {
        let service = RequestIdLayer.layer(tower::service_fn(|request: Request<()>| async move {
            let seen = request.headers().get(REQUEST_ID).cloned();
            let mut response = Response::new(());
            response.extensions_mut().insert(seen);
            Ok::<_, Infallible>(response)
        }));
        let mut response = service.oneshot(request).await.unwrap();
        let seen = response.extensions_mut().remove::<Option<HeaderValue>>().flatten();
        (seen, response)
    }

    #[tokio::test]
    async fn a_clients_id_reaches_the_service_and_comes_back_unchanged() {
        let request = Request::builder().header(REQUEST_ID, "client-req-1").body(()).unwrap();
        let (seen, response) = through(request).await;
        assert_eq!(seen.unwrap(), "client-req-1");
        assert_eq!(response.headers()[REQUEST_ID], "client-req-1");
        assert_eq!(response.headers().get_all(REQUEST_ID).iter().count(), 1);
    }

    #[tokio::test]
    async fn a_request_without_one_gets_a_fresh_id_both_ways() {
        let (first_seen, first) = through(Request::new(())).await;
        let (_, second) = through(Request::new(())).await;
        let id = first.headers()[REQUEST_ID].to_str().unwrap();
        assert_eq!(first_seen.unwrap(), id, "the service below sees the id the client gets");
        assert!(id.starts_with("req_"));
        assert_eq!(id.len(), 28);
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(second.headers()[REQUEST_ID], first.headers()[REQUEST_ID]);
    }

    #[tokio::test]
    async fn a_client_id_that_could_forge_a_log_field_or_flood_one_is_replaced() {
        for sent in ["x\" key=\"admin", "two words", &"a".repeat(MAX_LEN + 1), "caf\u{e9}"] {
            let request = Request::builder().header(REQUEST_ID, sent).body(()).unwrap();
            let (seen, response) = through(request).await;
            let id = response.headers()[REQUEST_ID].to_str().unwrap();
            assert!(id.starts_with("req_") && seen.unwrap() == id, "{sent:?} became {id:?}");
        }
        let uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        assert_eq!(
            through(Request::builder().header(REQUEST_ID, uuid).body(()).unwrap()).await.1.headers()[REQUEST_ID],
            uuid
        );
    }

    #[test]
    fn long_client_ids_are_cut_and_unprintable_ones_dropped() {
        let long = "a".repeat(300);
        assert_eq!(text(&HeaderValue::from_str(&long).unwrap()), "a".repeat(MAX_LEN));
        assert_eq!(text(&HeaderValue::from_static("trace-42")), "trace-42");
        assert_eq!(text(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()), "");
    }
}
