//! The sync worker's series, by rule image (configuration, not client input,
//! so the label set is bounded by the `[[sync]]` rules).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Labels of per-rule series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// The rule's image as configured.
    pub image: String,
}

/// Labels of rule passes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncPassLabels {
    /// The rule's image as configured.
    pub image: String,
    /// ok, error (its tag list failed) or paused (rate limit floor).
    pub result: &'static str,
}

/// What sync counts.
#[derive(Default)]
pub struct SyncMetrics {
    passes: Family<SyncPassLabels, Counter>,
    tags_checked: Family<SyncLabels, Counter>,
    tags_fetched: Family<SyncLabels, Counter>,
    bytes_fetched: Family<SyncLabels, Counter>,
    errors: Family<SyncLabels, Counter>,
    paused: Family<SyncLabels, Counter>,
}

/// What one rule's pass did, as counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct RulePass {
    /// Tags revalidated.
    pub checked: u64,
    /// Tags that needed content fetched (or moved).
    pub fetched: u64,
    /// Blob bytes downloaded.
    pub bytes: u64,
    /// Tags that failed.
    pub errors: u64,
    /// The pass paused at the rate limit floor.
    pub paused: bool,
    /// The tag list failed.
    pub failed: bool,
}

impl SyncMetrics {
    /// Registers the series in `registry`.
    pub fn register(registry: &mut super::catalog::Catalog) -> SyncMetrics {
        let m = SyncMetrics::default();
        registry.register(
            "sync_passes",
            "Sync rule passes, by image and result (ok, error, paused)",
            m.passes.clone(),
        );
        registry.register(
            "sync_tags_checked",
            "Tags a sync rule revalidated upstream",
            m.tags_checked.clone(),
        );
        registry.register(
            "sync_tags_fetched",
            "Tags a sync rule found moved or incomplete and fetched",
            m.tags_fetched.clone(),
        );
        registry.register(
            "sync_bytes_fetched",
            "Blob bytes sync downloaded",
            m.bytes_fetched.clone(),
        );
        registry.register(
            "sync_errors",
            "Tags a sync pass could not bring up to date",
            m.errors.clone(),
        );
        registry.register(
            "sync_paused",
            "Sync rule passes paused under the upstream's pull limit floor",
            m.paused.clone(),
        );
        m
    }

    /// Counts one rule's pass.
    pub fn observe(&self, image: &str, p: RulePass) {
        let l = SyncLabels {
            image: image.to_owned(),
        };
        let result = match (p.failed, p.paused) {
            (true, _) => "error",
            (false, true) => "paused",
            _ => "ok",
        };
        self.passes
            .get_or_create(&SyncPassLabels {
                image: image.to_owned(),
                result,
            })
            .inc();
        self.tags_checked.get_or_create(&l).inc_by(p.checked);
        self.tags_fetched.get_or_create(&l).inc_by(p.fetched);
        self.bytes_fetched.get_or_create(&l).inc_by(p.bytes);
        self.errors.get_or_create(&l).inc_by(p.errors);
        if p.paused {
            self.paused.get_or_create(&l).inc();
        }
    }
}
