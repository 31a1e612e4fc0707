//! The running total of cached (mirrored) bytes against `[storage]
//! max_cache_size`. Initialised from the index at open and moved by every
//! write that adds, relabels or removes cached content; when a write pushes it
//! past the budget, [`Store::cache_over_budget`] is notified (the composition
//! root forwards that to the evict worker's kick), so eviction starts within
//! seconds rather than at its next interval.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::Store;

/// Cached bytes, budget and the over-budget signal.
#[derive(Default)]
pub(super) struct CacheSize {
    bytes: AtomicI64,
    budget: AtomicU64,
    over: Notify,
}

impl CacheSize {
    /// Applies a committed write's change of cached bytes.
    pub(super) fn add(&self, delta: i64) {
        if delta == 0 {
            return;
        }
        let now = self.bytes.fetch_add(delta, Ordering::AcqRel) + delta;
        let budget = self.budget.load(Ordering::Acquire);
        if delta > 0 && budget > 0 && now > budget as i64 {
            self.over.notify_one();
        }
    }

    /// Sets the total (at open, from the index).
    pub(super) fn set(&self, bytes: u64) {
        self.bytes
            .store(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Release);
    }

    fn get(&self) -> u64 {
        u64::try_from(self.bytes.load(Ordering::Acquire)).unwrap_or(0)
    }
}

impl Store {
    /// Bytes of cached (mirrored) content in the index.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.get()
    }

    /// `[storage] max_cache_size` in bytes (0: unlimited).
    pub fn cache_budget(&self) -> u64 {
        self.cache.budget.load(Ordering::Acquire)
    }

    /// Sets the cache budget (0: unlimited); notifies at once if the cache is
    /// over it already.
    pub fn set_cache_budget(&self, bytes: u64) {
        self.cache.budget.store(bytes, Ordering::Release);
        if bytes > 0 && self.cached_bytes() > bytes {
            self.cache.over.notify_one();
        }
    }

    /// Notified when a write takes cached bytes past the budget.
    pub fn cache_over_budget(&self) -> &Notify {
        &self.cache.over
    }

    /// Applies a committed write's change of cached bytes.
    pub(super) fn cache_delta(&self, delta: i64) {
        self.cache.add(delta);
    }
}
