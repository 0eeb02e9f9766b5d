//! The signals that stop the server: SIGTERM (Kubernetes, Docker) and SIGINT (Ctrl-C).

use std::future::Future;

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
