//! Keeps cached (mirrored) content under `[storage] max_cache_size`: when the
//! cached bytes pass it, the least recently read cached content goes until
//! they are under `low_watermark` × the budget (see `store/evict_ops.rs` for
//! what is never taken). Runs every minute, and within seconds of a write
//! crossing the budget: the store signals it and the composition root kicks
//! this worker (see [`super::lifecycle`]).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::store::Store;

/// How often eviction checks the budget even when nothing kicked it.
pub const EVICT_INTERVAL: Duration = Duration::from_secs(60);

/// The evict worker.
pub struct Evict {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    low_watermark: f64,
    /// When the last pass ended still over the budget because pinned content
    /// alone exceeds it: kicked passes rest for
    /// [`STUCK_REST`] after that, rather than scan the index on every fill.
    stuck: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long kicked passes rest after a pass could not get under the budget.
const STUCK_REST: Duration = Duration::from_secs(30);

/// What one eviction pass did.
#[derive(Debug, Clone, Serialize)]
pub struct EvictReport {
    /// Content files evicted (blobs and manifests).
    pub evicted_blobs: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Cached bytes before the pass.
    pub cached_bytes_before: u64,
    /// Cached bytes after it.
    pub cached_bytes_after: u64,
    /// `max_cache_size` (0: unlimited).
    pub budget: u64,
    /// Cached digests kept because a pin protects them.
    pub skipped_pinned: u64,
    /// Cached digests kept because they were being read or downloaded.
    pub skipped_in_use: u64,
    /// Nothing was scanned: the last pass could not get under the budget
    /// (what is left is pinned) and kicked passes rest a while.
    pub resting: bool,
}

impl Evict {
    /// Evicts down to `low_watermark` of the store's budget
    /// ([`Store::set_cache_budget`]).
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, low_watermark: f64) -> Evict {
        Evict {
            store,
            metrics,
            low_watermark,
            stuck: std::sync::Mutex::new(None),
        }
    }

    /// One pass. Unless `force` (`wharf`'s on-demand pass), a pass within
    /// `STUCK_REST` of one that could not get under the budget does nothing
    /// and says so (`resting`).
    pub async fn pass(&self, force: bool) -> Result<EvictReport, super::WorkerError> {
        let resting = self
            .stuck
            .lock()
            .ok()
            .and_then(|s| *s)
            .is_some_and(|at| at.elapsed() < STUCK_REST);
        if resting && !force {
            let cached = self.store.cached_bytes();
            return Ok(EvictReport {
                evicted_blobs: 0,
                evicted_bytes: 0,
                cached_bytes_before: cached,
                cached_bytes_after: cached,
                budget: self.store.cache_budget(),
                skipped_pinned: 0,
                skipped_in_use: 0,
                resting: true,
            });
        }
        let report = self.evict_now().await?;
        // Only pins make it stuck: content in use is released soon, and its
        // eviction must then follow within seconds, not after a rest.
        let over = report.budget > 0
            && report.cached_bytes_after > report.budget
            && report.skipped_in_use == 0;
        if let Ok(mut s) = self.stuck.lock() {
            if over && s.is_none() {
                tracing::warn!(
                    cached = report.cached_bytes_after,
                    budget = report.budget,
                    pinned = report.skipped_pinned,
                    in_use = report.skipped_in_use,
                    "the cache stays over max_cache_size: what is left is pinned; unpin images or raise the budget"
                );
            }
            *s = over.then(std::time::Instant::now);
        }
        Ok(report)
    }
}

impl super::Worker for Evict {
    type Report = EvictReport;

    fn name(&self) -> &'static str {
        "evict"
    }

    /// Every minute while a budget is set; otherwise only when kicked.
    fn interval(&self) -> Option<Duration> {
        (self.store.cache_budget() > 0).then_some(EVICT_INTERVAL)
    }

    async fn run_once(&self) -> Result<EvictReport, super::WorkerError> {
        self.pass(false).await
    }
}

impl Evict {
    async fn evict_now(&self) -> Result<EvictReport, super::WorkerError> {
        let o = self.store.evict(self.low_watermark).await?;
        self.metrics.evicted_blobs.inc_by(o.evicted_blobs);
        self.metrics.evicted_bytes.inc_by(o.evicted_bytes);
        self.metrics
            .cache_bytes
            .set(i64::try_from(o.cached_bytes_after).unwrap_or(i64::MAX));
        if o.evicted_blobs > 0 {
            tracing::info!(
                blobs = o.evicted_blobs,
                bytes = o.evicted_bytes,
                before = o.cached_bytes_before,
                after = o.cached_bytes_after,
                budget = o.budget,
                "cache evicted down to its low watermark"
            );
        }
        Ok(EvictReport {
            evicted_blobs: o.evicted_blobs,
            evicted_bytes: o.evicted_bytes,
            cached_bytes_before: o.cached_bytes_before,
            cached_bytes_after: o.cached_bytes_after,
            budget: o.budget,
            skipped_pinned: o.skipped_pinned,
            skipped_in_use: o.skipped_in_use,
            resting: false,
        })
    }
}
