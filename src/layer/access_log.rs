//! Starts the per-request [`RequestRecord`] for API requests (`/v1/*`) and keeps it alive until
//! the response body ends, so that streams are logged and counted with their real duration,
//! tokens and outcome.

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
        Poll::Ready(Ok(response.map(|body| RecordBody { inner: body, record: Some(record) }.boxed_unsync())))
    }
}

/// Holds the record until the body has been sent to its end (or dropped by a disconnect).
struct RecordBody {
    inner: Body,
    record: Option<Arc<RequestRecord>>,
}

impl HttpBody for RecordBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling a body that reports its end, so the end is seen either way.
        let ended = matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream();
        if ended {
            if let Some(record) = self.record.take() {
                record.mark_body_complete();
            }
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
