//! Expires abandoned uploads (`[gc] upload_expiry`), removing their temp files;
//! sessions that never received a byte go much sooner (see
//! [`UNWRITTEN_UPLOAD_EXPIRY`]).

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::{Store, UNWRITTEN_UPLOAD_EXPIRY};

/// The upload-expiry worker.
pub struct UploadExpiry {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    expiry: Duration,
    unwritten: Duration,
}

impl UploadExpiry {
    /// A worker for sessions idle longer than `expiry`, and for sessions that
    /// never received a byte idle longer than [`UNWRITTEN_UPLOAD_EXPIRY`] (or
    /// `expiry`, if shorter).
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, expiry: Duration) -> Self {
        UploadExpiry {
            store,
            metrics,
            expiry,
            unwritten: UNWRITTEN_UPLOAD_EXPIRY.min(expiry),
        }
    }

    /// Sets how long a session that never received a byte may stay idle
    /// (capped at the general expiry); tests use it to drive one pass.
    pub fn with_unwritten_expiry(mut self, unwritten: Duration) -> Self {
        self.unwritten = unwritten.min(self.expiry);
        self
    }
}

/// What one expiry pass did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExpiryReport {
    /// Sessions removed.
    pub expired: usize,
}

impl super::Worker for UploadExpiry {
    type Report = ExpiryReport;

    fn name(&self) -> &'static str {
        "uploads"
    }

    /// Every quarter of the shorter expiry (at least every second, at most hourly).
    fn interval(&self) -> Option<Duration> {
        Some(
            (self.unwritten.min(self.expiry) / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(3600)),
        )
    }

    async fn run_once(&self) -> Result<ExpiryReport, super::WorkerError> {
        let n = self
            .store
            .expire_uploads(self.expiry, self.unwritten)
            .await?;
        if n > 0 {
            tracing::info!(count = n, "abandoned uploads expired");
            self.metrics.uploads_expired.inc_by(n as u64);
        }
        Ok(ExpiryReport { expired: n })
    }
}
