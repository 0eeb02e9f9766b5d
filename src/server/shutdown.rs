//! The signals that stop the server: SIGTERM (Kubernetes, Docker) and SIGINT (Ctrl-C); and the
//! cutoff at the end of the drain.

use std::future::Future;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The end of a drain. Requests still in flight when it is reached are answered instead of cut:
/// one waiting for its upstream gets a 503 `relay_shutting_down`, a stream ends with that error
/// in-band. A connection closed under a request is what SDKs report as a bare "Connection error".
#[derive(Debug, Clone, Default)]
pub struct Cutoff(CancellationToken);

impl Cutoff {
    /// Whether the drain is over: checked by whatever waits on an upstream when it is polled.
    pub fn reached(&self) -> bool {
        self.0.is_cancelled()
    }

    pub(crate) fn reach(&self) {
        self.0.cancel();
    }

    /// Resolves when the cutoff is reached; a connection's task waits on it, so that reaching it
    /// wakes every connection once and its requests find it reached.
    pub(crate) fn wait(&self) -> WaitForCancellationFutureOwned {
        self.0.clone().cancelled_owned()
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
