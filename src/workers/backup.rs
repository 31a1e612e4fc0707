//! Backup (`wharf backup DEST`, on demand only, with a destination): an
//! online, consistent copy of the data directory — the index snapshot and the
//! content it names (`store/backup_ops.rs`) — publishing its progress in
//! bytes. Restoring is `wharf serve` with `[storage] root = DEST`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::Store;

/// The backup worker: no schedule, every pass names its destination.
pub struct Backup {
    store: Arc<Store>,
    progress: Arc<super::Progress>,
}

/// What one backup wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The backup directory (absolute, on the daemon's host).
    pub dest: String,
    /// Content files in it.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, hard-linked from the data directory.
    pub linked: u64,
    /// Of those, copied.
    pub copied: u64,
    /// Index rows in the snapshot.
    pub index_rows: u64,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

impl Backup {
    /// A backup worker over `store`.
    pub fn new(store: Arc<Store>) -> Backup {
        Backup {
            store,
            progress: Arc::default(),
        }
    }

    /// One backup into `dest` (absolute; absent or an empty directory);
    /// `copy_only` copies content even where it could be hard-linked.
    /// Nothing appears at `dest` unless the whole backup is complete.
    pub async fn pass(
        &self,
        dest: PathBuf,
        copy_only: bool,
    ) -> Result<BackupReport, super::WorkerError> {
        let started = Instant::now();
        let run = self.store.backup_start(&dest, copy_only).await?;
        self.progress
            .start(run.blobs().iter().map(|b| b.size).sum());
        let mut report = BackupReport {
            dest: run.dest(),
            blobs: 0,
            bytes: 0,
            linked: 0,
            copied: 0,
            index_rows: run.rows(),
            ms: 0,
        };
        for b in run.blobs() {
            let exported = match self.store.backup_blob(&run, b).await {
                Ok(e) => e,
                Err(e) => {
                    self.store.backup_abandon(run).await;
                    return Err(e.into());
                }
            };
            report.blobs += 1;
            report.bytes += exported.size;
            if exported.linked {
                report.linked += 1;
            } else {
                report.copied += 1;
            }
            self.progress.advance(b.size);
        }
        self.store.backup_finish(run).await?;
        report.ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            dest = %report.dest,
            blobs = report.blobs,
            bytes = report.bytes,
            linked = report.linked,
            copied = report.copied,
            ms = report.ms,
            "backup finished"
        );
        Ok(report)
    }
}

impl super::Worker for Backup {
    type Report = BackupReport;

    fn name(&self) -> &'static str {
        "backup"
    }

    fn interval(&self) -> Option<Duration> {
        None
    }

    fn progress(&self) -> Option<Arc<super::Progress>> {
        Some(self.progress.clone())
    }

    /// A backup needs a destination, which a kick does not carry.
    async fn run_once(&self) -> Result<BackupReport, super::WorkerError> {
        Err(super::WorkerError::Other(
            "a backup needs a destination: run `wharf backup DEST` \
             (POST /_wharf/v1/backup {\"dest\":\"/path\"})"
                .into(),
        ))
    }
}
