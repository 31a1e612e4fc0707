//! The one shutdown signal, fanned out: a `watch` channel that turns true once.
//! The server, the workers and the reload tasks all wait on it here, so none of
//! them depends on `app`, which owns the sender.

use tokio::sync::watch;

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await.map(|_| ());
}
