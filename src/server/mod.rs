//! The listener: HTTP/1.1 and h2c on one port (hyper-util's auto builder), each connection
//! served by the tower stack, with graceful shutdown that lets in-flight requests and streams
//! finish up to a grace period.

pub mod shutdown;

use std::convert::Infallible;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service;

use crate::body::Body;
use shutdown::Cutoff;

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
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
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
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
            .into_owned();
        let connection = crate::wake::Gated::new(graceful.watch(connection));
        let cutoff = cutoff.wait();
        tokio::spawn(async move {
            // Registered once with this task's waker, not polled with every request: reaching the
            // cutoff wakes the connection, whose waiting requests then find it reached.
            let mut cutoff = std::pin::pin!(cutoff);
            std::future::poll_fn(|cx| {
                let _ = cutoff.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace_s = grace.as_secs(), "shutting down: no new connections; draining in-flight requests");
    let lead = CUTOFF_LEAD.min(grace / 4);
    let mut drained = std::pin::pin!(graceful.shutdown());
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
