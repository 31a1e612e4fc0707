//! Online garbage collection (`[gc] interval`, `wharf gc [--dry-run]`): blobs
//! that no manifest, pin, reader or download needs and that nobody touched
//! within `[gc] grace` are removed, rows first, files after, while the
//! registry serves (see `store/gc_ops.rs` for the mark, the sweep and why a
//! push racing a pass is safe). On a bucket shared with other nodes the local
//! pass drops rows only, and the pass goes on to the shared sweep
//! (`store/bucket_gc.rs`) when this node gets the `gc-lease`.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::store::{BucketSweep, Store};

/// How long a bucket sweep waits for the other nodes to publish their live
/// sets (they poll the lease every few seconds); a node silent past this
/// keeps its older set counted.
pub const LIVE_SET_WAIT: Duration = Duration::from_secs(30);

/// Digests listed by name in a report; the counts cover all of them.
pub const REPORT_LIST: usize = 1000;

/// The gc worker.
pub struct Gc {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    grace: Duration,
    interval: Option<Duration>,
}

/// One removed (or, dry, removable) digest.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// The digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

/// What one collection did (or would do).
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// Nothing was changed: this is what a collection would remove.
    pub dry_run: bool,
    /// Content files something needs.
    pub marked_blobs: u64,
    /// Content files removed (would be, dry).
    pub swept_blobs: u64,
    /// Their bytes.
    pub swept_bytes: u64,
    /// Unneeded but touched or stored within the grace.
    pub kept_young: u64,
    /// Unneeded but being read or downloaded.
    pub kept_in_use: u64,
    /// The first [`REPORT_LIST`] of them.
    pub removed: Vec<Removed>,
    /// Milliseconds marking.
    pub mark_ms: u64,
    /// Milliseconds sweeping (rows and files).
    pub sweep_ms: u64,
    /// The shared bucket's sweep (`None` on files). With content in a
    /// shared bucket, the counts above are this node's index rows; objects
    /// are deleted only here, by the node holding the gc lease.
    pub bucket: Option<BucketSweep>,
}

impl Gc {
    /// Collects blobs unneeded and untouched for `grace`, every `interval`
    /// (`None`: only on demand).
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        grace: Duration,
        interval: Option<Duration>,
    ) -> Gc {
        Gc {
            store,
            metrics,
            grace,
            interval,
        }
    }

    /// One collection; `dry_run` only reports. `run_once` is the real pass.
    pub async fn pass(&self, dry_run: bool) -> Result<GcReport, super::WorkerError> {
        let o = self.store.collect_garbage(self.grace, dry_run).await?;
        let swept_bytes = o.swept_bytes();
        let bucket = if self.store.is_shared() {
            Some(
                self.store
                    .sweep_bucket(self.grace, dry_run, LIVE_SET_WAIT)
                    .await?,
            )
        } else {
            None
        };
        if !dry_run {
            // What was freed: objects deleted from a shared bucket (rows
            // dropped there free nothing by themselves), files otherwise.
            let (blobs, bytes) = match &bucket {
                Some(b) => (b.deleted_objects, b.deleted_bytes),
                None => (o.swept.len() as u64, swept_bytes),
            };
            self.metrics.gc_swept_blobs.inc_by(blobs);
            self.metrics.gc_swept_bytes.inc_by(bytes);
            if !o.swept.is_empty() {
                tracing::info!(
                    blobs = o.swept.len(),
                    bytes = swept_bytes,
                    kept_young = o.kept_young,
                    kept_in_use = o.kept_in_use,
                    "gc removed unreferenced blobs"
                );
            }
        }
        Ok(GcReport {
            dry_run,
            marked_blobs: o.marked_blobs,
            swept_blobs: o.swept.len() as u64,
            swept_bytes,
            kept_young: o.kept_young,
            kept_in_use: o.kept_in_use,
            removed: o
                .swept
                .iter()
                .take(REPORT_LIST)
                .map(|(digest, size)| Removed {
                    digest: digest.clone(),
                    size: *size,
                })
                .collect(),
            mark_ms: o.mark.as_millis() as u64,
            sweep_ms: o.sweep.as_millis() as u64,
            bucket,
        })
    }
}

impl super::Worker for Gc {
    type Report = GcReport;

    fn name(&self) -> &'static str {
        "gc"
    }

    fn interval(&self) -> Option<Duration> {
        self.interval
    }

    async fn run_once(&self) -> Result<GcReport, super::WorkerError> {
        self.pass(false).await
    }
}
