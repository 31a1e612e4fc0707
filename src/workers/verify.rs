//! Verify (`wharf verify`, on demand only): re-hashes every stored blob and
//! manifest, streaming, at most [`VERIFY_RATE`] bytes per second (a constant,
//! not a config key: it only keeps a pass from starving the disk for pulls),
//! publishing its progress in bytes. A corrupt one is quarantined at once
//! (`store/verify_ops.rs`): never served again; a cached one comes back from
//! the upstream on the next pull; for a pushed one the report names the
//! repositories and tags it breaks.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::store::{Corrupt, Pace, Rehash, Store};

/// Bytes re-hashed per second at most: 100 MiB/s.
pub const VERIFY_RATE: u64 = 100 << 20;

/// The verify worker.
pub struct Verify {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    progress: Arc<super::Progress>,
    rate: u64,
}

/// What one verify pass found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Content files re-hashed.
    pub checked_blobs: u64,
    /// Their bytes.
    pub checked_bytes: u64,
    /// The corrupt ones, quarantined.
    pub corrupt: Vec<Corrupt>,
}

impl Verify {
    /// A verifier at [`VERIFY_RATE`].
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Verify {
        Verify {
            store,
            metrics,
            progress: Arc::default(),
            rate: VERIFY_RATE,
        }
    }
}

impl super::Worker for Verify {
    type Report = VerifyReport;

    fn name(&self) -> &'static str {
        "verify"
    }

    fn interval(&self) -> Option<Duration> {
        None
    }

    fn progress(&self) -> Option<Arc<super::Progress>> {
        Some(self.progress.clone())
    }

    async fn run_once(&self) -> Result<VerifyReport, super::WorkerError> {
        let blobs = self.store.stored_blobs().await?;
        self.progress.start(blobs.iter().map(|b| b.size).sum());
        let mut pace = Pace::new(self.rate);
        let mut report = VerifyReport {
            checked_blobs: 0,
            checked_bytes: 0,
            corrupt: Vec::new(),
        };
        for b in &blobs {
            match self.store.rehash(b, &mut pace).await? {
                Rehash::Gone => {}
                Rehash::Good => {
                    report.checked_blobs += 1;
                    report.checked_bytes += b.size;
                }
                Rehash::Corrupt(why) => {
                    report.checked_blobs += 1;
                    report.checked_bytes += b.size;
                    if let Some(c) = self.store.quarantine(&b.digest, &why).await? {
                        self.metrics.verify_corrupt.inc();
                        report.corrupt.push(c);
                    }
                }
            }
            self.progress.advance(b.size);
        }
        tracing::info!(
            blobs = report.checked_blobs,
            bytes = report.checked_bytes,
            corrupt = report.corrupt.len(),
            "verify finished"
        );
        Ok(report)
    }
}
