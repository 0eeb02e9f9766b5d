//! The drain: when shutdown starts, idle connections close, busy ones close after the response
//! in flight, and the server waits for them all to end. hyper-util's `GracefulShutdown` does
//! this for hyper's connections only; the relay's own HTTP/1 loop (`h1.rs`) needs it too.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

/// A connection's view of the drain. Holding one keeps [`Draining::finished`] waiting.
#[derive(Debug, Clone)]
pub(super) struct Drain {
    state: Arc<State>,
    _live: mpsc::Sender<Infallible>,
}

#[derive(Debug, Default)]
struct State {
    started: AtomicBool,
    /// Wakes each connection's task, registered once per connection.
    waiters: Notify,
}

impl Drain {
    /// Whether shutdown has started: checked where a connection could end cleanly.
    pub(super) fn started(&self) -> bool {
        self.state.started.load(Ordering::Acquire)
    }

    /// Resolves when the drain starts; a connection's task polls it once, before serving, so
    /// that the start wakes every connection once.
    pub(super) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let state = self.state.clone();
        async move {
            let notified = state.waiters.notified();
            if !state.started.load(Ordering::Acquire) {
                notified.await;
            }
        }
    }
}

/// The server's side of the drain.
#[derive(Debug)]
pub(super) struct Draining {
    state: Arc<State>,
    live: mpsc::Receiver<Infallible>,
    first: mpsc::Sender<Infallible>,
}

impl Draining {
    pub(super) fn new() -> Self {
        let (first, live) = mpsc::channel(1);
        Draining { state: Arc::default(), live, first }
    }

    /// A view for a new connection.
    pub(super) fn connection(&self) -> Drain {
        Drain { state: self.state.clone(), _live: self.first.clone() }
    }

    /// Starts the drain and resolves when every connection has ended.
    pub(super) fn finished(self) -> impl Future<Output = ()> {
        let Draining { state, mut live, first } = self;
        state.started.store(true, Ordering::Release);
        state.waiters.notify_waiters();
        drop(first);
        async move { while live.recv().await.is_some() {} }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finishes_when_every_connection_has_ended_and_wakes_those_waiting() {
        let draining = Draining::new();
        let connection = draining.connection();
        let woken = tokio::spawn({
            let connection = connection.clone();
            async move {
                connection.wait().await;
                connection.started()
            }
        });
        tokio::task::yield_now().await;
        let mut finished = std::pin::pin!(draining.finished());
        assert!(woken.await.unwrap(), "the start wakes a waiting connection, which sees it started");
        let still_open = tokio::time::timeout(std::time::Duration::from_millis(50), finished.as_mut()).await;
        assert!(still_open.is_err(), "a connection is still open");
        drop(connection);
        tokio::time::timeout(std::time::Duration::from_secs(1), finished).await.expect("finished");
    }
}
