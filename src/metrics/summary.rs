//! Totals read back from the counters for the web page's dashboard: bytes
//! served by source and cache lookups by result. They are the same counters
//! `/metrics` exports (`served_bytes`, `cache_requests`), so the page and a
//! scrape agree.

use super::Metrics;
use super::handles::{CACHE_KINDS, CACHE_RESULTS};

/// What the cache saved since the start.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CacheTotals {
    /// Manifest and blob body bytes served from the store.
    pub bytes_local: u64,
    /// Bytes served while they arrived from an upstream (misses).
    pub bytes_upstream: u64,
    /// Bytes served while they arrived from a LAN peer.
    pub bytes_peer: u64,
    /// Proxied lookups answered from the store (fresh or stale).
    pub hits: u64,
    /// Proxied lookups that went to an upstream or a peer.
    pub misses: u64,
}

impl CacheTotals {
    /// Hits over all proxied lookups; `None` before the first.
    pub fn hit_ratio(&self) -> Option<f64> {
        let all = self.hits + self.misses;
        (all > 0).then(|| self.hits as f64 / all as f64)
    }
}

impl Metrics {
    /// The cache totals so far.
    pub fn cache_totals(&self) -> CacheTotals {
        let served = |source: &str| {
            super::SOURCES
                .iter()
                .position(|s| *s == source)
                .map_or(0, |i| self.served_bytes[i].get())
        };
        let mut t = CacheTotals {
            bytes_local: served("local"),
            bytes_upstream: served("upstream"),
            bytes_peer: served("peer"),
            ..CacheTotals::default()
        };
        for kind in &self.handles.cache {
            for (r, counter) in kind.iter().enumerate() {
                let n = counter.get().map_or(0, |c| c.get());
                match CACHE_RESULTS[r] {
                    "HIT" | "STALE" => t.hits += n,
                    _ => t.misses += n,
                }
            }
        }
        debug_assert_eq!(self.handles.cache.len(), CACHE_KINDS.len());
        t
    }
}
