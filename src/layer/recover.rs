//! The rescue point: every [`RelayError`] becomes an HTTP response with an OpenAI-shaped JSON
//! body naming the class, the upstream and the request id. Nothing below this layer may drop a
//! connection; nothing above it sees an error.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::{full, Body, APPLICATION_JSON};
use crate::error::{ErrorCode, RelayError};
use crate::layer::request_id::{self, REQUEST_ID};
use crate::record::RequestRecord;

/// Adds [`Recover`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoverLayer;

impl<S> Layer<S> for RecoverLayer {
    type Service = Recover<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recover { inner }
    }
}

/// Turns `Err(RelayError)` into a response.
#[derive(Debug, Clone)]
pub struct Recover<S> {
    inner: S,
}

/// The response for an error.
pub fn error_response(error: &RelayError, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(full(error.to_response_body(request_id)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    if let Some(retry_after) = error.retry_after {
        if let Ok(value) = HeaderValue::try_from(retry_after.as_secs().max(1).to_string()) {
            headers.insert(header::RETRY_AFTER, value);
        }
    }
    if let Some(upstream) = error.upstream.as_deref().and_then(|u| HeaderValue::try_from(u).ok()) {
        headers.insert(crate::upstream::headers::UPSTREAM_HEADER, upstream);
    }
    response
}

// === impl Recover ===

impl<S, B> Service<Request<B>> for Recover<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = RelayError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RecoverFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready; an error here would have nowhere to go but a dropped
        // connection, so readiness errors are not part of this stack's contract.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let record = request.extensions().get::<Arc<RequestRecord>>().cloned();
        // The record carries the id; the header is read only without one (a stack without the
        // access log), kept as a reference count and made text only for an error.
        let request_id = if record.is_none() { request.headers().get(REQUEST_ID).cloned() } else { None };
        RecoverFuture { inner: self.inner.call(request), record, request_id }
    }
}

pin_project! {
    /// The response future of [`Recover`]: the inner future's error, as a response.
    pub struct RecoverFuture<F> {
        #[pin]
        inner: F,
        record: Option<Arc<RequestRecord>>,
        request_id: Option<HeaderValue>,
    }
}

impl<F> Future for RecoverFuture<F>
where
    F: Future<Output = Result<Response<Body>, RelayError>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response)),
            Poll::Ready(Err(error)) => error,
            // The drain is over: an answer now beats a connection closed under the request.
            Poll::Pending => match this.record {
                Some(record) if record.cut_off(cx) => RelayError::new(
                    ErrorCode::ShuttingDown,
                    "the relay is shutting down, and its drain period ended before this request was answered",
                ),
                _ => return Poll::Pending,
            },
        };
        if let Some(record) = this.record {
            record.set_error(error.code);
            if let Some(upstream) = &error.upstream {
                record.set_upstream(upstream);
            }
        }
        let request_id = match (this.record, this.request_id) {
            (Some(record), _) => record.request_id().to_owned(),
            (None, header) => header.as_ref().map(request_id::text).unwrap_or_default(),
        };
        Poll::Ready(Ok(error_response(&error, &request_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn errors_become_json_responses() {
        let failing = tower::service_fn(|_: Request<()>| async {
            Err::<Response<Body>, _>(RelayError::new(ErrorCode::ModelNotFound, "no such model"))
        });
        let mut request = Request::new(());
        request.headers_mut().insert("x-request-id", HeaderValue::from_static("req-7"));
        let response = RecoverLayer.layer(failing).oneshot(request).await.unwrap();
        assert_eq!(response.status(), 404);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "model_not_found");
        assert_eq!(json["error"]["request_id"], "req-7");
    }
}
