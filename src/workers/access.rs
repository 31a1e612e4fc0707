//! Flushes last-read times from memory to the index every few seconds (one
//! write transaction per flush, never one per read; see `store/access.rs`).
//! The last flush at shutdown is the store's own, in `Store::close`.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// How often touches reach the index.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// The access-time flusher.
pub struct AccessFlush {
    store: Arc<Store>,
}

impl AccessFlush {
    /// Flushes `store`'s touches every [`FLUSH_INTERVAL`].
    pub fn new(store: Arc<Store>) -> AccessFlush {
        AccessFlush { store }
    }
}

/// What one flush wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlushReport {
    /// Rows written.
    pub flushed: usize,
}

impl super::Worker for AccessFlush {
    type Report = FlushReport;

    fn name(&self) -> &'static str {
        "access"
    }

    fn interval(&self) -> Option<Duration> {
        Some(FLUSH_INTERVAL)
    }

    async fn run_once(&self) -> Result<FlushReport, super::WorkerError> {
        Ok(FlushReport {
            flushed: self.store.flush_access().await?,
        })
    }
}
