//! The task that feeds the history: every few seconds it reads the counter
//! totals (atomics, no locks on the request path, no I/O) and records their
//! differences. It runs beside the workers and stops with them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// How often the counters are sampled: a bucket's edge is off by at most this.
pub const EVERY: Duration = Duration::from_secs(5);

/// Samples `metrics` into its history every `every` until `shutdown` turns
/// true, then records once more.
pub async fn run(metrics: Arc<Metrics>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => metrics.sample_history(),
            _ = crate::shutdown::until_shutdown(&mut shutdown) => break,
        }
    }
    metrics.sample_history();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn samples_until_shutdown() {
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run(metrics.clone(), Duration::from_millis(10), rx));
        metrics.observe_cache("blob", "HIT");
        metrics.observe_served("local", 42);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // `history().hour` without a fresh sample: only the task records.
        while metrics.history.snapshot().hour.total().served_local != 42 {
            assert!(tokio::time::Instant::now() < deadline, "never sampled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(true).ok();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the sampler did not stop on shutdown"));
    }
}
