//! What a `/metrics` scrape refreshes before it renders: gauges read from
//! running totals (downloads in flight, cached bytes, the budget, breakers),
//! upstream call counts copied from the upstream layer, and the values that
//! cost a system call or an index walk (disk space, files and bytes by
//! origin), refreshed in a background task. The walk is paced: it runs at
//! most once per [`MIN_WALK_INTERVAL`], and never more often than
//! [`WALK_PACE`] times its own last duration, so on a store with millions of
//! files it costs a bounded share of one blocking thread however often
//! Prometheus scrapes, and never blocks the runtime. The web dashboard reads
//! the same paced values ([`Proxy::storage_view`]), so a view walks nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Proxy;
use crate::metrics::Metrics;
use crate::store::{OriginTotals, Store, Usage};

/// Shortest time between two walks of the index for the origin totals.
pub const MIN_WALK_INTERVAL: Duration = Duration::from_secs(5);
/// A walk waits at least this many times its last duration after it ends.
const WALK_PACE: u32 = 20;
/// How long a scrape waits for the refresh it started (its values are then
/// in this scrape; a slower refresh lands in the next one).
const SCRAPE_WAIT: Duration = Duration::from_millis(500);

/// Pacing of the background refresh.
#[derive(Default)]
pub(super) struct Refresh {
    running: AtomicBool,
    /// When the next walk may start (None: now).
    next_walk: Mutex<Option<Instant>>,
    /// What the last walk found, per upstream (cached bytes).
    cached_by_upstream: Mutex<BTreeMap<String, u64>>,
    /// What the last walk found by origin.
    totals: Mutex<OriginTotals>,
}

/// Stored content as of the last paced walk, with cached bytes from the
/// running total (exact).
#[derive(Debug, Clone, Default)]
pub struct StorageView {
    /// Files and bytes by origin.
    pub totals: OriginTotals,
    /// Cached bytes by upstream (as `Store::usage` attributes them).
    pub cached_by_upstream: BTreeMap<String, u64>,
}

impl StorageView {
    /// Content files of both origins.
    pub fn blobs(&self) -> u64 {
        self.totals.pushed_blobs + self.totals.cached_blobs
    }

    /// Bytes of both origins.
    pub fn bytes(&self) -> u64 {
        self.totals.pushed_bytes + self.totals.cached_bytes
    }
}

fn origin_totals(u: &Usage) -> OriginTotals {
    OriginTotals {
        pushed_blobs: u.pushed_blobs,
        pushed_bytes: u.pushed_bytes,
        cached_blobs: u.cached_blobs,
        cached_bytes: u.cached_bytes,
    }
}

impl Refresh {
    /// Whether a walk may start now.
    fn walk_due(&self) -> bool {
        self.next_walk
            .lock()
            .map(|n| n.is_none_or(|at| Instant::now() >= at))
            .unwrap_or(true)
    }

    /// Records a walk that took `took`.
    fn walked(&self, took: Duration) {
        if let Ok(mut n) = self.next_walk.lock() {
            *n = Some(Instant::now() + MIN_WALK_INTERVAL.max(took * WALK_PACE));
        }
    }
}

/// Clears `running` when the refresh ends, however it ends.
struct Running(Arc<Refresh>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

impl Proxy {
    /// Refreshes the gauges that describe the engine and the store (called
    /// when scraped); waits briefly for the background part.
    pub async fn update_metrics(&self) {
        let m = &self.metrics;
        m.downloads_in_flight.set(self.inflight.len() as i64);
        let cached = self.store.cached_bytes();
        m.cache_bytes.set(i64::try_from(cached).unwrap_or(i64::MAX));
        m.storage.set_cached_bytes(cached);
        m.cache_budget_bytes
            .set(i64::try_from(self.store.cache_budget()).unwrap_or(i64::MAX));
        m.uploads_open.set(self.store.open_uploads() as i64);
        for up in self.upstreams.iter() {
            m.set_upstream_skipped(&up.name, up.is_skipped());
            m.upstreams.sync_calls(&up.name, &up.calls().snapshot());
        }
        if self.refresh.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let running = Running(self.refresh.clone());
        let task = tokio::spawn(refresh(self.store.clone(), self.metrics.clone(), running));
        let _ = tokio::time::timeout(SCRAPE_WAIT, task).await;
    }

    /// Stored content for the web dashboard: refreshes like a scrape (the
    /// walk paced, never per view), then reads the last walk's values and
    /// the exact running total of cached bytes.
    pub async fn storage_view(&self) -> StorageView {
        self.update_metrics().await;
        let mut totals = self.refresh.totals.lock().map(|t| *t).unwrap_or_default();
        totals.cached_bytes = self.store.cached_bytes();
        let cached_by_upstream = self
            .refresh
            .cached_by_upstream
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        StorageView {
            totals,
            cached_by_upstream,
        }
    }
}

/// Disk space every time; the origin totals when their pace allows.
async fn refresh(store: Arc<Store>, metrics: Arc<Metrics>, running: Running) {
    match store.disk_space().await {
        Ok(d) => metrics.storage.set_disk(d),
        Err(e) => tracing::debug!(error = %e, "disk space unknown"),
    }
    if running.0.walk_due() {
        let started = Instant::now();
        match store.usage().await {
            Ok(u) => {
                let t = origin_totals(&u);
                metrics.storage.set_totals(&t);
                if let Ok(mut slot) = running.0.totals.lock() {
                    *slot = t;
                }
                if let Ok(mut slot) = running.0.cached_by_upstream.lock() {
                    *slot = u.cached_by_upstream;
                }
            }
            Err(e) => tracing::warn!(error = %e, "storage totals for /metrics failed"),
        }
        running.0.walked(started.elapsed());
    }
}
