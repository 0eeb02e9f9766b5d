//! Watching the config file: on SIGHUP, and when its content changes.
//!
//! The file is polled by content rather than watched by inode: reading the path follows
//! symlinks, so a Kubernetes ConfigMap's atomic `..data` symlink swap and an editor's
//! rename-on-save are both seen, where an inotify watch on the old inode would go quiet after the
//! first update. A change is applied once the content has stayed the same for one debounce
//! interval, so a half-written file is never loaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{Config, ConfigError};

/// Why a reload happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChanged,
}

/// A reload attempt: the newly validated config, or why it was rejected.
pub type Reloaded = (Trigger, Result<Config, ConfigError>);

fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|bytes| Sha256::digest(&bytes).into())
}

/// [`digest`] on the blocking pool: the runtime thread also serves requests (it is the only one
/// in a 1-CPU container), and a read from a slow or hung filesystem (NFS, FUSE) would stall
/// every request for as long as it takes. One read at a time: the loop awaits it.
async fn digest_off_thread(path: &Path) -> Option<[u8; 32]> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || digest(&path)).await.ok().flatten()
}

/// Watches `path`; sends a validated config (or the rejection) on every change or SIGHUP.
/// `poll` is how often the file is checked; `debounce` how long it must stay unchanged.
pub fn watch(path: PathBuf, poll: Duration, debounce: Duration) -> mpsc::Receiver<Reloaded> {
    let (tx, rx) = mpsc::channel(4);
    // Taken now, not when the task first runs: a change made in between must not become the
    // baseline.
    let mut applied = digest(&path);
    // Registered before returning, so a SIGHUP right after startup reloads instead of taking
    // the signal's default action (terminating the process).
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<Option<()>>();
            let trigger = tokio::select! {
                Some(()) = signalled => Trigger::Signal,
                _ = ticker.tick() => {
                    let current = digest_off_thread(&path).await;
                    if current.is_none() || current == applied {
                        continue;
                    }
                    tokio::time::sleep(debounce).await;
                    if digest_off_thread(&path).await != current {
                        // Still being written; look again on the next tick.
                        continue;
                    }
                    Trigger::FileChanged
                }
            };
            applied = digest_off_thread(&path).await;
            let loaded = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Config::load(&path)).await
            };
            let Ok(loaded) = loaded else { continue };
            if tx.send((trigger, loaded)).await.is_err() {
                return;
            }
        }
    });
    rx
}
