//! Keeps this node's live set in the shared bucket current (`[storage]
//! backend = "s3"`): republished every `every`, and promptly when a sweep
//! asks. The node holding the `gc-lease` asks by writing a new mark into it;
//! this loop reads the lease (one small GET) every [`POLL`] and republishes
//! when it sees a mark it has not answered (see `store/bucket_gc.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::Store;
use crate::store::shared::lease;

/// How often the lease is read for a sweep's mark.
pub const POLL: Duration = Duration::from_secs(2);
/// Periodic republication never more often than this.
const MIN_EVERY: Duration = Duration::from_secs(30);

/// How often a node republishes its set unasked: half the grace (so a set
/// is never much older than the grace a sweep trusts), at least
/// [`MIN_EVERY`], and at least once per gc interval when one is set.
pub fn period(grace: Duration, interval: Option<Duration>) -> Duration {
    let p = (grace / 2).max(MIN_EVERY);
    interval.map_or(p, |i| p.min(i.max(MIN_EVERY)))
}

/// Runs until `shutdown` turns true. The set was first published at start,
/// before the node served (`app.rs`).
pub async fn run(store: Arc<Store>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let Some(bucket) = store.records().map(|r| r.bucket().clone()) else {
        return;
    };
    let mut answered: Option<u64> = None;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = crate::shutdown::until_shutdown(&mut shutdown) => return,
        }
        let mark = match lease::current_mark(&bucket).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the gc lease for a sweep's mark");
                None
            }
        };
        let asked = mark.is_some() && mark != answered;
        if !asked && last.elapsed() < every {
            continue;
        }
        let answering = if asked { mark } else { answered };
        match store.publish_live_set(answering).await {
            Ok(n) => {
                if asked {
                    tracing::debug!(digests = n, "live set republished for a sweep");
                }
                answered = answering;
                last = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "could not publish this node's live set"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_half_the_grace_bounded_by_the_interval() {
        let m = Duration::from_secs(60);
        assert_eq!(period(Duration::from_secs(600), None), 5 * m);
        assert_eq!(period(Duration::from_secs(600), Some(2 * m)), 2 * m);
        assert_eq!(period(Duration::ZERO, None), MIN_EVERY);
    }
}
