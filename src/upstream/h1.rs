//! HTTP/1.1 connections to a plain-`http` upstream, driven by the request's own task.
//!
//! hyper-util's pooled client runs every connection in a task of its own and hands requests,
//! responses and each body chunk across channels between that task and the request's. For the
//! upstreams a relay most often sits next to (vLLM, Ollama, another relay in the same cluster)
//! that hand-over, and the pool's bookkeeping around it, cost about as much CPU as the relay's
//! own work. Here the connection is polled by whoever polls the response: the attempt until the
//! head arrives, then the response body. A connection returns to the pool when its response was
//! read to the end and hyper is ready for the next request; a body dropped early (a client that
//! went away) drops the connection, which closes it.
//!
//! `https` upstreams keep hyper-util's client: ALPN may choose HTTP/2, whose connections are
//! multiplexed and need a task of their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tokio::time::Instant;
use tower::Service;

use super::client::Connector;
use crate::error::BoxError;

type Io = <Connector as Service<Uri>>::Response;
/// Boxed: hyper's connection state (buffers included) is large, and it moves between the pool,
/// the request future and the body.
type Connection = Pin<Box<http1::Connection<Io, Full<Bytes>>>>;
type Sender = http1::SendRequest<Full<Bytes>>;

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused: servers drop idle
/// connections after a while, and a request sent on one they just closed would fail.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The idle connections to one upstream and the means to open more.
pub(super) struct H1Pool {
    connector: Connector,
    /// `scheme://authority` of the upstream: what the connector dials.
    destination: Uri,
    /// Most recently used last: reuse takes the warmest connection.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: Sender,
    connection: Connection,
    since: Instant,
}

impl H1Pool {
    /// A pool for the upstream at `destination`, connecting with `connector`.
    pub(super) fn new(connector: Connector, destination: Uri) -> Arc<Self> {
        Arc::new(H1Pool { connector, destination, idle: Mutex::new(Vec::new()) })
    }

    /// Sends `request` (whose URI may be absolute: only its path and query are sent) on an idle
    /// connection, or on a new one. A request that a reused connection turned out to be closed
    /// for, before any of it was sent, is sent again on a new connection.
    pub(super) fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Sending<'_, impl Future<Output = Result<Response<Incoming>, TrySendError>> + Send> {
        if let Some(path) = request.uri().path_and_query().cloned() {
            *request.uri_mut() = Uri::from(path);
        }
        match self.checkout() {
            Some(idle) => Sending::Reused {
                exchanging: Exchange::new(idle.sender, idle.connection).send(request, self),
                pool: self,
            },
            None => Sending::Fresh { sending: Box::pin(Arc::clone(self).send_on_new_connection(request)) },
        }
    }

    /// The rare path, boxed: connecting (TLS included) has a future larger than the rest of a
    /// request's, which inline would be copied with every attempt.
    async fn send_on_new_connection(
        self: Arc<Self>,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let (sender, connection) = self.connect().await?;
        match Exchange::new(sender, connection).send(request, &self).await {
            Ok(response) => Ok(response),
            Err(Failed::Unsent(_)) => Err("the new upstream connection closed before the request was sent".into()),
            Err(Failed::Error(error)) => Err(error),
        }
    }

    async fn connect(&self) -> Result<(Sender, Connection), BoxError> {
        let io = self.connector.clone().call(self.destination.clone()).await?;
        let (sender, connection) = http1::handshake(io).await?;
        Ok((sender, Box::pin(connection)))
    }

    /// The most recently returned idle connection that is still open.
    fn checkout(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(mut candidate) = idle.pop() {
            // Polled without a waker: a connection the server closed while idle completes now.
            let closed = candidate.connection.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready();
            if !closed && candidate.sender.is_ready() && candidate.since.elapsed() < IDLE_TIMEOUT {
                return Some(candidate);
            }
        }
        None
    }

    fn put_back(&self, sender: Sender, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        // Connections come back at the end and are taken from the end, so the list is oldest
        // first and the expired ones are a prefix: found without visiting every idle connection.
        let expired = idle.partition_point(|connection| now.duration_since(connection.since) >= IDLE_TIMEOUT);
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, connection, since: now });
        }
    }
}

enum Failed {
    /// The connection was closed before the request was written; here it is back. Boxed: it is
    /// rare, and unboxed it made `Failed`, in every send's result, 256 bytes rather than 16.
    Unsent(Box<Request<Full<Bytes>>>),
    Error(BoxError),
}

/// One connection while it carries one request.
struct Exchange {
    sender: Sender,
    connection: Option<Connection>,
}

impl Exchange {
    fn new(sender: Sender, connection: Connection) -> Self {
        Exchange { sender, connection: Some(connection) }
    }

    /// Hands `request` to the connection now; the future waits for the response head.
    fn send(
        mut self,
        request: Request<Full<Bytes>>,
        pool: &Arc<H1Pool>,
    ) -> Exchanging<impl Future<Output = Result<Response<Incoming>, TrySendError>> + Send> {
        let sending = self.sender.try_send_request(request);
        Exchanging { sending, exchange: Some(self), pool: Arc::downgrade(pool) }
    }
}

type TrySendError = hyper::client::conn::TrySendError<Request<Full<Bytes>>>;

pin_project_lite::pin_project! {
    /// A request on its connection until the response head arrives: hyper's future for the
    /// head, and the connection, driven meanwhile. A named future rather than an `async fn`:
    /// those keep their arguments (here the 256-byte request) for their whole life beside the
    /// futures they await, and the request was held four times over.
    struct Exchanging<F> {
        #[pin]
        sending: F,
        exchange: Option<Exchange>,
        pool: Weak<H1Pool>,
    }
}

impl<F> Future for Exchanging<F>
where
    F: Future<Output = Result<Response<Incoming>, TrySendError>>,
{
    type Output = Result<Response<PooledBody>, Failed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut sending = this.sending;
        let exchange = this.exchange;
        // The connection answering wakes this task; the response is taken in the same poll.
        let polled = crate::wake::hold(|| {
            if let Some(exchange) = exchange.as_mut() {
                drive(&mut exchange.connection, cx);
            }
            let polled = sending.as_mut().poll(cx);
            let pending = polled.is_pending();
            (polled, pending)
        });
        Poll::Ready(match ready!(polled) {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let body = PooledBody { body, exchange: exchange.take(), pool: std::mem::take(this.pool) };
                Ok(Response::from_parts(parts, body))
            }
            Err(mut error) => match error.take_message() {
                Some(request) => Err(Failed::Unsent(Box::new(request))),
                None => Err(Failed::Error(error.into_error().into())),
            },
        })
    }
}

pin_project_lite::pin_project! {
    /// The future of [`H1Pool::send`].
    #[project = SendingProjection]
    pub(super) enum Sending<'a, F> {
        /// On an idle connection; a request it turns out to be closed for goes to a new one.
        Reused { #[pin] exchanging: Exchanging<F>, pool: &'a Arc<H1Pool> },
        /// On a new connection.
        Fresh { sending: Pin<Box<dyn Future<Output = Result<Response<PooledBody>, BoxError>> + Send>> },
    }
}

impl<F> Future for Sending<'_, F>
where
    F: Future<Output = Result<Response<Incoming>, TrySendError>>,
{
    type Output = Result<Response<PooledBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (request, pool) = match self.as_mut().project() {
            SendingProjection::Reused { exchanging, pool } => match ready!(exchanging.poll(cx)) {
                Ok(response) => return Poll::Ready(Ok(response)),
                Err(Failed::Error(error)) => return Poll::Ready(Err(error)),
                Err(Failed::Unsent(request)) => (*request, Arc::clone(*pool)),
            },
            SendingProjection::Fresh { sending } => return sending.as_mut().poll(cx),
        };
        self.set(Sending::Fresh { sending: Box::pin(pool.send_on_new_connection(request)) });
        self.poll(cx)
    }
}

/// Lets the connection read and write what it can. Once it has finished (closed, or failed:
/// the response or body waiting on it then reports the error) it is never polled again.
fn drive(connection: &mut Option<Connection>, cx: &mut Context<'_>) {
    if let Some(running) = connection.as_mut() {
        if running.as_mut().poll(cx).is_ready() {
            *connection = None;
        }
    }
}

/// A response body that drives its connection, and returns it to the pool at the end.
pub(super) struct PooledBody {
    body: Incoming,
    exchange: Option<Exchange>,
    pool: Weak<H1Pool>,
}

impl PooledBody {
    fn release(&mut self) {
        let Some(mut exchange) = self.exchange.take() else { return };
        // One more turn lets hyper finish the message and become ready for the next request.
        drive(&mut exchange.connection, &mut Context::from_waker(Waker::noop()));
        if let (Some(connection), Some(pool)) = (exchange.connection, self.pool.upgrade()) {
            if exchange.sender.is_ready() {
                pool.put_back(exchange.sender, connection);
            }
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // Taking a chunk wakes the connection so it may send the next; it is driven before every
        // read anyway, so that wake-up only matters while the read is pending.
        crate::wake::hold(|| {
            if let Some(exchange) = this.exchange.as_mut() {
                drive(&mut exchange.connection, cx);
            }
            let polled = Pin::new(&mut this.body).poll_frame(cx);
            if matches!(polled, Poll::Ready(None)) || this.body.is_end_stream() {
                this.release();
            }
            let pending = polled.is_pending();
            (polled, pending)
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
