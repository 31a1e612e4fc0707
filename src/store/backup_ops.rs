//! Online backup (`wharf backup DEST`): one read transaction of the index
//! copied table by table into `DEST/index.redb`, then every content file that
//! snapshot's `blobs` table names put beside it (linked or copied, verified,
//! see `content/backup.rs`), and only then the whole made visible as `DEST`.
//!
//! Consistency while pushes and passes go on: a read transaction is a
//! snapshot, so the index copy is one point in time. Its content must still be
//! there when it is exported, although gc or eviction may remove the rows of
//! a blob right after the snapshot and its file after that. Every digest the
//! snapshot names is therefore held in use (`in_use.rs`) *before* the snapshot
//! begins, and kept until the backup ends: gc and eviction check "in use"
//! both in the transaction that removes rows and again before removing a
//! file, so a removal either committed before the snapshot (which then does
//! not name the digest) or leaves the file for a later pass. Digests are only
//! known from a snapshot, so the snapshot is retaken until it names nothing
//! that was not held when it began (a second try almost always suffices; only
//! pushes in that short window add digests). Holding them also keeps those
//! blobs from being collected while the backup runs, which only delays gc.
//!
//! Left out on purpose: upload sessions (their staged bytes are not part of a
//! backup; clients restart them) and the `sweeping` list (removals in
//! flight, of digests the snapshot no longer names).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::content::{BackupDir, Exported};
use super::in_use::InUseGuard;
use super::meta::{BlobRecord, decode};
use super::{Store, StoreError, StoredBlob, tables};

/// Snapshots retaken at most while pushes keep adding digests not held yet.
const MAX_SNAPSHOT_TRIES: usize = 50;

/// A backup in progress: its destination, what the snapshot names, and the
/// holds that keep that content from being removed until it is done.
pub struct BackupRun {
    dir: Arc<BackupDir>,
    blobs: Vec<StoredBlob>,
    rows: u64,
    _held: Vec<InUseGuard>,
}

impl BackupRun {
    /// Every content row of the snapshot: what [`Store::backup_blob`] exports.
    pub fn blobs(&self) -> &[StoredBlob] {
        &self.blobs
    }

    /// Index rows copied.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Where the backup ends up.
    pub fn dest(&self) -> String {
        self.dir.dest()
    }
}

/// What one snapshot attempt found: the blobs (all held) and rows copied, or
/// the digests it names that were not held when it began.
enum Attempt {
    Done(Vec<StoredBlob>, u64),
    Unheld(Vec<String>),
}

impl Store {
    /// Starts a backup into `dest` (absolute; absent or an empty directory):
    /// checks it, then writes the index snapshot into `DEST.partial`. Content
    /// is hard-linked where possible unless `copy_only`.
    pub async fn backup_start(
        &self,
        dest: &Path,
        copy_only: bool,
    ) -> Result<BackupRun, StoreError> {
        let (root, dest) = (self.root.clone(), dest.to_path_buf());
        let dir = tokio::task::spawn_blocking(move || BackupDir::create(&dest, &root, copy_only))
            .await??;
        let dir = Arc::new(dir);
        match self.backup_snapshot(&dir).await {
            Ok(run) => Ok(run),
            Err(e) => {
                let d = dir.clone();
                tokio::task::spawn_blocking(move || d.abandon()).await?;
                Err(e)
            }
        }
    }

    async fn backup_snapshot(&self, dir: &Arc<BackupDir>) -> Result<BackupRun, StoreError> {
        let mut held: HashSet<String> = HashSet::new();
        let mut guards = Vec::new();
        for _ in 0..MAX_SNAPSHOT_TRIES {
            let known = Arc::new(held.clone());
            let index = dir.index_path();
            let attempt = self
                .meta
                .read(move |txn| {
                    let mut blobs = Vec::new();
                    let mut unheld = Vec::new();
                    for item in txn.open_table(tables::BLOBS)?.iter()? {
                        let (k, v) = item?;
                        if !known.contains(k.value()) {
                            unheld.push(k.value().to_owned());
                            continue;
                        }
                        let rec: BlobRecord = decode(v.value())?;
                        let digest = k.value().parse().map_err(|_| {
                            StoreError::Corrupt(format!("bad digest {:?} in index", k.value()))
                        })?;
                        blobs.push(StoredBlob {
                            digest,
                            size: rec.size,
                            origin: rec.origin,
                        });
                    }
                    if !unheld.is_empty() {
                        return Ok(Attempt::Unheld(unheld));
                    }
                    let rows = copy_index(txn, &index)?;
                    Ok(Attempt::Done(blobs, rows))
                })
                .await?;
            match attempt {
                Attempt::Done(blobs, rows) => {
                    tracing::info!(dest = %dir.dest(), blobs = blobs.len(), rows, "backup: index snapshot written");
                    return Ok(BackupRun {
                        dir: dir.clone(),
                        blobs,
                        rows,
                        _held: guards,
                    });
                }
                Attempt::Unheld(digests) => {
                    for d in digests {
                        if let Ok(digest) = d.parse() {
                            guards.push(self.hold_in_use(&digest));
                        }
                        held.insert(d);
                    }
                }
            }
        }
        Err(StoreError::BackupFailed(format!(
            "the index kept naming new content through {MAX_SNAPSHOT_TRIES} snapshots; try again"
        )))
    }

    /// Exports one blob of the snapshot into the backup (verified by digest
    /// and size). Content missing or corrupt fails the backup with a message
    /// saying what to do.
    pub async fn backup_blob(
        &self,
        run: &BackupRun,
        blob: &StoredBlob,
    ) -> Result<Exported, StoreError> {
        let exported = match self.files.export(&blob.digest, &run.dir).await {
            Err(StoreError::BlobUnknown(d)) => {
                return Err(StoreError::BackupFailed(format!(
                    "the content file of {d} is missing although the index names it; \
                     run `wharf verify`, then back up again"
                )));
            }
            r => r?,
        };
        if exported.size != blob.size {
            return Err(StoreError::BackupFailed(format!(
                "the content file of {} has {} bytes, the index says {}; run `wharf verify`, \
                 then back up again",
                blob.digest, exported.size, blob.size
            )));
        }
        Ok(exported)
    }

    /// Completes a backup: fsyncs and renames `DEST.partial` to `DEST`; on
    /// failure removes it. The holds end here either way.
    pub async fn backup_finish(&self, run: BackupRun) -> Result<(), StoreError> {
        let dir = run.dir.clone();
        let done = tokio::task::spawn_blocking(move || {
            let r = dir.finish();
            if r.is_err() {
                dir.abandon();
            }
            r
        })
        .await?;
        drop(run);
        done
    }

    /// Gives a backup up: removes `DEST.partial`.
    pub async fn backup_abandon(&self, run: BackupRun) {
        let dir = run.dir.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || dir.abandon()).await {
            tracing::warn!(error = %e, "could not remove an abandoned backup");
        }
    }
}

/// Copies every table of the snapshot `txn` (but uploads and the sweeping
/// list, created empty) into a new index at `path`, in one durable commit.
/// Returns how many rows were copied. Blocking.
fn copy_index(txn: &ReadTransaction, path: &Path) -> Result<u64, StoreError> {
    let db = redb::Database::create(path)?;
    let out = db.begin_write()?;
    let mut rows = 0;
    rows += copy_table(txn, &out, tables::BLOBS)?;
    rows += copy_table(txn, &out, tables::REPO_BLOBS)?;
    rows += copy_table(txn, &out, tables::MANIFESTS)?;
    rows += copy_table(txn, &out, tables::TAGS)?;
    rows += copy_table(txn, &out, tables::REFERRERS)?;
    rows += copy_table(txn, &out, tables::REPOS)?;
    rows += copy_table(txn, &out, tables::MANIFEST_REFS)?;
    rows += copy_table(txn, &out, tables::ACCESS)?;
    rows += copy_table(txn, &out, tables::PINS)?;
    rows += copy_table(txn, &out, tables::SCHEMA)?;
    rows += copy_table(txn, &out, tables::REPLICATION_QUEUE)?;
    rows += copy_table(txn, &out, tables::SYNC_STATE)?;
    out.open_table(tables::UPLOADS)?;
    out.open_table(tables::SWEEPING)?;
    out.commit()?;
    drop(db);
    Ok(rows)
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<u64, StoreError> {
    let src = from.open_table(def)?;
    let mut dst = to.open_table(def)?;
    let mut n = 0;
    for item in src.iter()? {
        let (k, v) = item?;
        dst.insert(k.value(), v.value())?;
        n += 1;
    }
    Ok(n)
}
