//! Starts the per-request [`RequestRecord`] for API requests (`/v1/*`) and keeps it alive with
//! the response body, so that streams are logged and counted with their real duration, tokens
//! and outcome.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::Body;
use crate::metrics::Metrics;
use crate::record::RequestRecord;
use crate::server::shutdown::Cutoff;

/// Adds [`AccessLog`].
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    metrics: Arc<Metrics>,
    cutoff: Cutoff,
}

impl AccessLogLayer {
    /// Records into `metrics`; each record knows the server's drain `cutoff`.
    pub fn new(metrics: Arc<Metrics>, cutoff: Cutoff) -> Self {
        AccessLogLayer { metrics, cutoff }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner, metrics: self.metrics.clone(), cutoff: self.cutoff.clone() }
    }
}

/// Inserts an `Arc<RequestRecord>` into the request's extensions.
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    metrics: Arc<Metrics>,
    cutoff: Cutoff,
}

// === impl AccessLog ===

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Scrapes and probes of the relay's own endpoints are not client traffic: counting them
        // would inflate request rates and dilute error budgets.
        if !request.uri().path().starts_with("/v1/") {
            return AccessLogFuture { inner: self.inner.call(request), record: None };
        }
        let record = RequestRecord::start(
            self.metrics.clone(),
            self.cutoff.clone(),
            crate::layer::request_id::of(&request),
            request.method().clone(),
            request.version(),
            request.uri().path(),
        );
        request.extensions_mut().insert(record.clone());
        AccessLogFuture { inner: self.inner.call(request), record: Some(record) }
    }
}

pin_project! {
    /// The response future of [`AccessLog`]: hands the record to the response body.
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        record: Option<Arc<RequestRecord>>,
    }
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let Some(record) = this.record.take() else { return Poll::Ready(Ok(response)) };
        record.set_status(response.status().as_u16());
        Poll::Ready(Ok(response.map(|body| RecordBody { inner: body, record, ended: false }.boxed_unsync())))
    }
}

/// Holds the record until the body is dropped: after its end was sent, or on a disconnect. The
/// record's own drop counts and logs the request, and the server drops a body only after its
/// last write, so that work is done once the client has its answer, not before the last bytes
/// leave (on a relay that shares its CPU with the upstream, all work before that write adds to
/// the answer's latency).
struct RecordBody {
    inner: Body,
    record: Arc<RequestRecord>,
    ended: bool,
}

impl HttpBody for RecordBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling a body that reports its end, so the end is seen either way.
        if !self.ended && (matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream()) {
            self.ended = true;
            self.record.mark_body_complete();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_is_counted_when_its_body_is_dropped_not_when_the_body_ends() {
        let metrics = Arc::new(Metrics::new());
        let record = RequestRecord::chat_for_test(&metrics, "req_1");
        record.set_status(200);
        let mut body = RecordBody { inner: crate::body::full("{}"), record, ended: false };
        while body.frame().await.is_some() {}
        assert!(body.is_end_stream());
        let counted = || metrics.requests.with_label_values(&["other", "none", "200", "none"]).get();
        assert_eq!((counted(), metrics.in_flight.get()), (0, 1), "counted before the server's last write");
        drop(body);
        assert_eq!((counted(), metrics.in_flight.get()), (1, 0));
        assert_eq!(metrics.client_disconnects.with_label_values(&["other"]).get(), 0, "an ended body is no disconnect");
    }
}
