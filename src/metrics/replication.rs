//! The replicate worker's series: what operators alert on when a second site
//! falls behind (items queued growing, failures counting up).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Labels of per-target series: the target's URL comes from the
/// configuration, never from a client.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The target's URL.
    pub target: String,
}

/// Labels of finished queue items.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    /// The target's URL.
    pub target: String,
    /// `done`, `failed` (an attempt failed; it is tried again) or `dropped`
    /// (the target refused it for good; logged).
    pub result: &'static str,
}

/// The series, registered once.
pub struct ReplicationMetrics {
    items: Family<ItemLabels, Counter>,
    queued: Family<TargetLabels, Gauge>,
    bytes: Family<TargetLabels, Counter>,
}

impl ReplicationMetrics {
    /// Registers the series in `registry`.
    pub(super) fn register(registry: &mut super::catalog::Catalog) -> ReplicationMetrics {
        let items = Family::<ItemLabels, Counter>::default();
        registry.register(
            "replication_items",
            "Replication queue items finished, by target and result (done, failed attempt, dropped)",
            items.clone(),
        );
        let queued = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "replication_queued",
            "Replication queue items waiting, by target",
            queued.clone(),
        );
        let bytes = Family::<TargetLabels, Counter>::default();
        registry.register(
            "replication_bytes",
            "Blob and manifest bytes sent to each replication target",
            bytes.clone(),
        );
        ReplicationMetrics {
            items,
            queued,
            bytes,
        }
    }

    /// Counts `n` items of `target` that ended as `result`.
    pub fn items(&self, target: &str, result: &'static str, n: u64) {
        if n > 0 {
            self.items
                .get_or_create(&ItemLabels {
                    target: target.to_owned(),
                    result,
                })
                .inc_by(n);
        }
    }

    /// Sets the number of items waiting for `target`.
    pub fn set_queued(&self, target: &str, n: u64) {
        self.queued
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts `n` bytes sent to `target`.
    pub fn sent(&self, target: &str, n: u64) {
        if n > 0 {
            self.bytes
                .get_or_create(&TargetLabels {
                    target: target.to_owned(),
                })
                .inc_by(n);
        }
    }
}
