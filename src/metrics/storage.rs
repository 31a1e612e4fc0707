//! Gauges that describe stored content and its filesystem. Set by the scrape
//! from values the store keeps cheaply (cached bytes, the budget, open
//! uploads) or refreshes in the background at a paced interval (files and
//! bytes by origin, disk space): a scrape never walks the index itself.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::store::{DiskSpace, OriginTotals};

/// Labels of per-origin series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    /// `pushed` or `cached`.
    pub origin: &'static str,
}

/// The series, registered once.
pub struct StorageMetrics {
    bytes: Family<OriginLabels, Gauge>,
    blobs: Family<OriginLabels, Gauge>,
    disk_free: Gauge,
    disk_total: Gauge,
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl StorageMetrics {
    /// Registers the series in `registry`.
    pub(super) fn register(registry: &mut super::catalog::Catalog) -> StorageMetrics {
        let bytes = Family::<OriginLabels, Gauge>::default();
        registry.register(
            "storage_bytes",
            "Bytes of content files by origin (pushed, cached); cached is exact, pushed is refreshed at most every few seconds",
            bytes.clone(),
        );
        let blobs = Family::<OriginLabels, Gauge>::default();
        registry.register(
            "storage_blobs",
            "Content files (blobs and manifests) by origin, refreshed at most every few seconds",
            blobs.clone(),
        );
        let disk_free = Gauge::default();
        registry.register(
            "disk_free_bytes",
            "Bytes still available on the data directory's filesystem",
            disk_free.clone(),
        );
        let disk_total = Gauge::default();
        registry.register(
            "disk_total_bytes",
            "Size of the data directory's filesystem",
            disk_total.clone(),
        );
        for origin in ["pushed", "cached"] {
            let _ = bytes.get_or_create(&OriginLabels { origin });
            let _ = blobs.get_or_create(&OriginLabels { origin });
        }
        StorageMetrics {
            bytes,
            blobs,
            disk_free,
            disk_total,
        }
    }

    /// Records a walk of the index (cached bytes come from the running
    /// total instead, which is exact).
    pub fn set_totals(&self, t: &OriginTotals) {
        let set = |f: &Family<OriginLabels, Gauge>, origin, n| {
            f.get_or_create(&OriginLabels { origin })
                .set(gauge_value(n));
        };
        set(&self.bytes, "pushed", t.pushed_bytes);
        set(&self.blobs, "pushed", t.pushed_blobs);
        set(&self.blobs, "cached", t.cached_blobs);
    }

    /// Records the running total of cached bytes (exact at every scrape).
    pub fn set_cached_bytes(&self, n: u64) {
        self.bytes
            .get_or_create(&OriginLabels { origin: "cached" })
            .set(gauge_value(n));
    }

    /// Records the filesystem's space.
    pub fn set_disk(&self, d: DiskSpace) {
        self.disk_free.set(gauge_value(d.free));
        self.disk_total.set(gauge_value(d.total));
    }
}
