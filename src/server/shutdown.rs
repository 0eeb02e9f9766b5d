//! The signals that stop the server: SIGTERM (Kubernetes, Docker) and SIGINT (Ctrl-C); and the
//! cutoff at the end of the drain.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The end of a drain. Requests still in flight when it is reached are answered instead of cut:
/// one waiting for its upstream gets a 503 `relay_shutting_down`, a stream ends with that error
/// in-band. A connection closed under a request is what SDKs report as a bare "Connection error".
///
/// Every request's record holds one and reads it whenever it waits, so both are one atomic
/// operation; tokio-util's `CancellationToken` took a lock for each (about 370 instructions per
/// relayed request, bench/callgrind.sh). An HTTP/1 request runs in its connection's task, which
/// reaching the cutoff wakes; an HTTP/2 request runs in a task of its own, which registers a
/// [`CutoffWaiter`].
#[derive(Debug, Clone, Default)]
pub struct Cutoff(Arc<CutoffState>);

#[derive(Debug, Default)]
struct CutoffState {
    reached: AtomicBool,
    /// Wakes the connections, each registered once, and the HTTP/2 requests' tasks.
    waiters: Arc<Notify>,
}

impl Cutoff {
    /// Whether the drain is over: checked by whatever waits on an upstream when it is polled.
    pub fn reached(&self) -> bool {
        self.0.reached.load(Ordering::Acquire)
    }

    pub(crate) fn reach(&self) {
        self.0.reached.store(true, Ordering::Release);
        self.0.waiters.notify_waiters();
    }

    /// Resolves when the cutoff is reached; a connection's task waits on it, so that reaching it
    /// wakes every connection once and its requests find it reached. It registers when first
    /// polled: a connection's task polls it once, before serving.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let state = self.0.clone();
        async move {
            let notified = state.waiters.notified();
            if !state.reached.load(Ordering::Acquire) {
                notified.await;
            }
        }
    }

    /// A registration for a task that no connection's wake reaches (an HTTP/2 request's).
    pub(crate) fn waiter(&self) -> CutoffWaiter {
        CutoffWaiter(Box::pin(self.0.waiters.clone().notified_owned()))
    }
}

/// Wakes the task that last polled it when the cutoff is reached; from [`Cutoff::waiter`].
#[derive(Debug)]
pub(crate) struct CutoffWaiter(Pin<Box<OwnedNotified>>);

impl CutoffWaiter {
    /// Whether the cutoff has been reached; if not, the calling task is woken when it is.
    pub(crate) fn poll_reached(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.0.as_mut().poll(cx).is_ready()
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives right after startup drains the
/// relay instead of killing it with the signal's default action.
pub fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let (mut term, mut interrupt) = match (term, interrupt) {
                (Ok(term), Ok(interrupt)) => (term, interrupt),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for SIGTERM/SIGINT");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    }
}
