//! The listener: HTTP/1.1 served by the relay's own loop (`h1.rs`), h2c and anything unusual by
//! hyper's server, each connection served by the tower stack, with graceful shutdown that lets
//! in-flight requests and streams finish up to a grace period.

mod date;
mod drain;
mod h1;
pub mod shutdown;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::Service;

use crate::body::Body;
use shutdown::Cutoff;

/// A request's body as the stack sees it: read whole by the relay's own HTTP/1 loop, or
/// streamed by hyper's server.
#[derive(Debug)]
pub enum RequestBody {
    Buffered(Option<Bytes>),
    Hyper(Incoming),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Buffered(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            RequestBody::Hyper(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Buffered(data) => data.is_none(),
            RequestBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Buffered(data) => SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64)),
            RequestBody::Hyper(body) => body.size_hint(),
        }
    }
}

/// How long before the end of the grace period the cutoff is reached: the time the answers it
/// makes have to reach their clients.
const CUTOFF_LEAD: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` until `shutdown` resolves, then drains for up to `grace`;
/// what is still in flight near its end is answered at `cutoff` (see [`Cutoff`]).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    cutoff: Cutoff,
) where
    S: Service<Request<RequestBody>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(h1::HEAD_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    let hyper = Arc::new(builder);
    let draining = drain::Draining::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let drain = draining.connection();
        let waits = (cutoff.wait(), drain.wait());
        let connection = h1::serve(stream, service.clone(), hyper.clone(), drain);
        tokio::spawn(crate::wake::Gated::new(async move {
            // Registered once with this task's waker, not polled with every request: reaching the
            // cutoff, or the drain starting, wakes the connection, which then finds it so.
            let (cutoff, drain) = waits;
            let (mut cutoff, mut drain) = (std::pin::pin!(cutoff), std::pin::pin!(drain));
            std::future::poll_fn(|cx| {
                let _ = cutoff.as_mut().poll(cx);
                let _ = drain.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
            connection.await;
        }));
    }
    drop(listener);
    tracing::info!(grace_s = grace.as_secs(), "shutting down: no new connections; draining in-flight requests");
    let lead = CUTOFF_LEAD.min(grace / 4);
    let mut drained = std::pin::pin!(draining.finished());
    tokio::select! {
        () = &mut drained => return tracing::info!("drained; exiting"),
        () = tokio::time::sleep(grace - lead) => {}
    }
    tracing::warn!("shutdown grace period ending; answering the requests still in flight with relay_shutting_down");
    cutoff.reach();
    tokio::select! {
        () = &mut drained => tracing::info!("drained; exiting"),
        () = tokio::time::sleep(lead) => tracing::warn!("shutdown grace period expired; exiting with connections still open"),
    }
}
