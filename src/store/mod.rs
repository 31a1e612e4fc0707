//! Storage: the redb index and the content, behind registry-shaped
//! operations. Nothing here sees an HTTP type; handlers never see redb or a
//! path. Content bytes go through [`content`] (the `BlobBackend` seam): only
//! `content/` knows where they live.
//!
//! Invariants: a content file is complete and verified before any row names it; a
//! row is removed before its file; a blob is readable in a repository only if
//! linked there.
//!
//! Lifecycle state (see each file): last-read times in memory flushed in
//! batches to `access` (`access.rs`), digests in use by readers and downloads
//! (`in_use.rs`), the running total of cached bytes against the budget
//! (`cache_size.rs`), what writes named while a pass runs (`changes.rs`),
//! hot manifest lookups kept while the index is unchanged
//! (`manifest_cache.rs`),
//! crash-safe removal through the `sweeping` table (`sweep.rs`), and the
//! passes themselves: eviction (`evict_ops.rs`), gc (`gc_ops.rs`), verify
//! (`verify_ops.rs`), online backups (`backup_ops.rs`), pins (`pin_ops.rs`), all marking through the
//! `manifest_refs` closure (`closure.rs`). Start-up finishes interrupted
//! removals, reconciles, then migrates older indexes (`migrate.rs`).

pub use bucket_gc::BucketSweep;

pub mod content;
pub mod in_use;
pub mod meta;
pub mod migrate;
pub mod shared;
pub mod tables;
pub mod uploads;

mod access;
mod admin_ops;
mod backup_ops;
mod blob_ops;
mod browse_ops;
mod bucket_gc;
mod bucket_ops;
mod cache_ops;
mod cache_size;
mod changes;
mod closure;
mod commits;
mod evict_ops;
mod gc_ops;
mod hosted_names;
mod import_ops;
mod labels;
mod manifest_cache;
mod manifest_ops;
mod manifest_rows;
mod pacer;
mod pin_ops;
mod reconcile;
mod records_follow;
mod records_publish;
mod replication_ops;
mod sweep;
mod sync_ops;
mod totals;
mod verify_ops;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::oci::{Digest, RepoName};

pub use admin_ops::{RepoDetail, TagDetail};
pub use admin_ops::{RepoSummary, SummaryPage, Usage};
pub use backup_ops::BackupRun;
pub use content::{Adopted, BlobReader, BlobWriter, Content, DiskSpace, Exported, Pace, Scan};
pub use evict_ops::EvictOutcome;
pub use gc_ops::GcOutcome;
pub use import_ops::ImportedBlob;
pub use manifest_cache::CachedTag;
pub use manifest_ops::{ManifestInfo, Page, PutManifest};
pub use meta::{Meta, Origin};
pub use pin_ops::Pin;
pub use replication_ops::{MAX_QUEUE, QueueItem, QueueOp, ReplicaRule};
pub use sync_ops::{Missing, SyncState};
pub use totals::OriginTotals;
pub use uploads::{
    MAX_UPLOADS, MAX_UPLOADS_PER_CLIENT, SessionHandle, UNWRITTEN_UPLOAD_EXPIRY, UploadSession,
    UploadTable,
};
pub use verify_ops::{Corrupt, Rehash, StoredBlob};

/// Everything that can go wrong below the HTTP layer. `http/error.rs` maps each
/// variant to an OCI code in one place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Disk trouble (full disk included).
    #[error("storage I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// redb failed.
    #[error("index error: {0}")]
    Index(String),
    /// A stored value could not be decoded.
    #[error("index value damaged: {0}")]
    Corrupt(String),
    /// The index writer is gone (shutting down).
    #[error("index is closed")]
    Closed,
    /// A lock holder panicked.
    #[error("internal lock poisoned")]
    Poisoned,
    /// Content hashed to something other than what was promised.
    #[error("content digest is {actual}, expected {expected}")]
    DigestMismatch {
        /// What the client or manifest said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// No such blob in this repository.
    #[error("blob {0} is unknown to this repository")]
    BlobUnknown(Digest),
    /// No such manifest or tag in this repository.
    #[error("manifest {0} is unknown to this repository")]
    ManifestUnknown(String),
    /// No such repository.
    #[error("repository {0} is unknown")]
    NameUnknown(RepoName),
    /// Deleting this would break a pinned image (the pin's whole closure is
    /// kept); the operator unpins first.
    #[error("{what} is pinned ({pin}); run `wharf unpin {pin}` first, then delete it")]
    Pinned {
        /// What the request would delete (`repo:tag`, `repo@digest`).
        what: String,
        /// The pin protecting it, as `wharf pin` lists it.
        pin: String,
    },
    /// A manifest names content the repository does not have.
    #[error("manifest references {0}, which this repository does not have")]
    ManifestBlobUnknown(Digest),
    /// A manifest is malformed or inconsistent.
    #[error("{0}")]
    ManifestInvalid(String),
    /// No such upload session (finished, cancelled, expired or never started).
    #[error("upload session is unknown")]
    UploadUnknown,
    /// A chunk does not start where the upload currently ends.
    #[error("chunk does not start at the upload's current end ({offset} bytes received)")]
    UploadRange {
        /// Bytes received so far.
        offset: u64,
    },
    /// Declared and actual sizes disagree.
    #[error("{0}")]
    SizeInvalid(String),
    /// Too many upload sessions are open, from one client address or in total
    /// (each holds memory and, while a request runs, a file).
    #[error(
        "too many open upload sessions {scope} (limit {limit}); finish or cancel some, \
         or wait for abandoned ones to expire"
    )]
    TooManyUploads {
        /// "from this client address" or "on this registry".
        scope: &'static str,
        /// The cap that was hit.
        limit: usize,
        /// Seconds a client should wait before trying again.
        retry_after: u64,
    },
    /// An import found the tag naming another manifest already (a push
    /// landed first); the tag was left as it is.
    #[error("{tag} names {digest} already; left as it is")]
    TagTaken {
        /// `repo:tag`.
        tag: String,
        /// The digest the tag names.
        digest: String,
    },
    /// A backup destination is unusable (not empty, not absolute, inside
    /// the data directory, ...): nothing was written there.
    #[error("{0}")]
    BackupRefused(String),
    /// A backup could not be completed (corrupt content, a disk error at the
    /// destination): what was written is removed; the message says why.
    #[error("backup failed: {0}")]
    BackupFailed(String),
    /// Start-up found the index naming content that is not on disk in bulk: an
    /// unmounted volume, a wrong symlink or a restored index, never something to
    /// "repair" by dropping the rows. Start-up stops; nothing was changed.
    #[error("{}", reconcile::content_missing_message(.blobs, .index, *.missing, *.indexed))]
    ContentMissing {
        /// Where content lives (`blobs/sha256`, or what the backend names).
        blobs: String,
        /// The index file.
        index: PathBuf,
        /// Indexed blobs without a file; `None` when `blobs` itself is missing.
        missing: Option<usize>,
        /// Indexed blobs in total.
        indexed: usize,
    },
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Index(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Index(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Io(Arc::new(std::io::Error::other(e.to_string())))
    }
}

/// The storage engine: index, content files, open uploads.
pub struct Store {
    meta: Meta,
    files: Content,
    uploads: UploadTable,
    /// Digests between "file committed" and "rows written", so a failed push
    /// removes its file only when no other push of the same bytes needs it.
    commits: Arc<commits::Commits>,
    root: PathBuf,
    /// Names holding pushed content, kept in memory because routing asks on
    /// every request (DESIGN's "has been pushed here" rule).
    pushed: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Canonical mirrored names holding cached content: a push may not claim
    /// a name whose mirror already holds content (routing rule 4).
    mirrored: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Last-read times not flushed yet.
    access: Arc<access::AccessMap>,
    /// Digests being read or downloaded now.
    in_use: Arc<in_use::InUse>,
    /// Cached bytes against the budget.
    cache: cache_size::CacheSize,
    /// What writes named while a gc or eviction pass runs.
    changes: Arc<changes::Changes>,
    /// Hot manifest lookups and bytes, current while the index is unchanged.
    manifest_cache: manifest_cache::ManifestCache,
    /// Which hosted repositories pushes and deletions are queued for.
    replica: Arc<replication_ops::ReplicaRules>,
    /// The hosted records other nodes on the same bucket read (`None`: this
    /// node is alone on its files).
    records: Option<shared::Records>,
    /// When each shared hosted tag was last compared with its record.
    tag_checks: records_follow::TagChecks,
    /// When this node last warned of an upload it does not hold while it
    /// shares a bucket (unix seconds): at most one warning a minute.
    stray_upload_warned: std::sync::atomic::AtomicU64,
}

impl crate::oci::routing::NameFacts for Store {
    fn is_hosted(&self, name: &str) -> bool {
        self.is_pushed_repo(name)
    }

    fn is_mirrored(&self, local: &str) -> bool {
        self.mirrored
            .read()
            .map(|m| m.contains(local))
            .unwrap_or(false)
    }
}

/// 32 random hex characters: unguessable names for temp files and upload ids.
pub fn random_hex() -> Result<String, StoreError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| StoreError::from(std::io::Error::other(e.to_string())))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Seconds since the epoch, for record timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Opens `root`: creates the layout, empties `tmp/`, opens the index and
    /// reconciles it with the files (a crash between rename and index write leaves
    /// an orphan file, moved to `lost+found/`). Content missing in bulk (an
    /// unmounted volume, a restored index) stops start-up with
    /// [`StoreError::ContentMissing`] and changes nothing.
    pub async fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_on(root, None, None).await
    }

    /// [`Store::open`] with content in `backend` (an S3 bucket) instead of
    /// files under `root`; `None`: files. The index and staging stay under
    /// `root` either way. `bucket`: the bucket shared with other nodes,
    /// whose hosted records this node writes and reads.
    pub async fn open_on(
        root: &Path,
        backend: Option<Arc<dyn content::BlobBackend>>,
        bucket: Option<Arc<shared::Bucket>>,
    ) -> Result<Store, StoreError> {
        let root = root.to_path_buf();
        let r = root.clone();
        let meta = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            std::fs::create_dir_all(&r)?;
            Meta::open(&r.join("index.redb"))
        })
        .await??;
        let files = match backend {
            Some(b) => Content::new(&root, b),
            None => Content::fs(&root),
        };
        let settled = async {
            sweep::finish_at_start(&meta, &files).await?;
            reconcile::reconcile(&meta, &files, &root).await?;
            migrate::migrate(&meta, &files).await
        };
        if let Err(e) = settled.await {
            // Close the index before reporting, so the operator (or a test) can
            // fix the cause and open it again in the same process.
            tokio::task::spawn_blocking(move || meta.close()).await?;
            return Err(e);
        }
        let store = Store {
            meta,
            files,
            uploads: UploadTable::default(),
            commits: Default::default(),
            root,
            pushed: Default::default(),
            mirrored: Default::default(),
            access: Default::default(),
            in_use: Default::default(),
            cache: Default::default(),
            changes: Default::default(),
            manifest_cache: Default::default(),
            replica: Default::default(),
            records: bucket.map(shared::Records::new),
            tag_checks: Default::default(),
            stray_upload_warned: Default::default(),
        };
        let (pushed, mirrored, cached) = store
            .meta
            .read(|txn| {
                use redb::ReadableTable;
                let mut pushed = std::collections::HashSet::new();
                let mut mirrored = std::collections::HashSet::new();
                for item in txn.open_table(tables::REPOS)?.iter()? {
                    let (k, v) = item?;
                    match meta::decode::<meta::RepoRecord>(v.value())?.origin {
                        Origin::Pushed => pushed.insert(k.value().to_owned()),
                        Origin::Cached => mirrored.insert(k.value().to_owned()),
                    };
                }
                let mut cached = 0u64;
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    let (_, v) = item?;
                    let rec: meta::BlobRecord = meta::decode(v.value())?;
                    if rec.origin == Origin::Cached {
                        cached += rec.size;
                    }
                }
                Ok((pushed, mirrored, cached))
            })
            .await?;
        store.cache.set(cached);
        if let Ok(mut p) = store.pushed.write() {
            *p = pushed;
        }
        if let Ok(mut m) = store.mirrored.write() {
            *m = mirrored;
        }
        Ok(store)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index handle, for workers and shutdown.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Storage is writable and the index answers: what `/readyz` reports.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.meta
            .read(|txn| {
                txn.open_table(tables::REPOS)?;
                Ok(())
            })
            .await?;
        self.files.probe().await
    }

    /// The index answers a read and its writer thread commits a write: what
    /// the systemd watchdog asks before each ping (a wedged writer would stall
    /// every push and pull-through while `/healthz` still answered).
    pub async fn alive(&self) -> Result<(), StoreError> {
        self.meta
            .read(|txn| {
                txn.open_table(tables::REPOS)?;
                Ok(())
            })
            .await?;
        self.meta
            .write(|txn| {
                txn.open_table(tables::REPOS)?;
                Ok(())
            })
            .await
    }

    /// Whether `repo` holds pushed content (routing rule 3).
    pub fn is_pushed_repo(&self, repo: &str) -> bool {
        self.pushed
            .read()
            .map(|p| p.contains(repo))
            .unwrap_or(false)
    }

    /// Every repository holding pushed content (for start-up checks).
    pub fn pushed_repos(&self) -> Vec<String> {
        self.pushed
            .read()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Remembers that `repo` now holds pushed content.
    pub(crate) fn mark_pushed(&self, repo: &RepoName) {
        if let Ok(mut p) = self.pushed.write() {
            if !p.contains(repo.as_str()) {
                p.insert(repo.to_string());
            }
        }
    }

    /// Remembers that the mirrored name `repo` now holds cached content.
    pub(crate) fn mark_mirrored(&self, repo: &RepoName) {
        if let Ok(mut m) = self.mirrored.write() {
            if !m.contains(repo.as_str()) {
                m.insert(repo.to_string());
            }
        }
    }

    /// Number of open upload sessions.
    pub fn open_uploads(&self) -> usize {
        self.uploads.len()
    }

    /// The registry of digests in use (readers and downloads hold guards).
    pub fn in_use(&self) -> &Arc<in_use::InUse> {
        &self.in_use
    }

    /// Counts a use of `digest` (a download in flight, a reader) until the
    /// guard drops: eviction and gc leave it alone meanwhile.
    pub fn hold_in_use(&self, digest: &Digest) -> in_use::InUseGuard {
        self.in_use.hold(digest)
    }

    /// Waits (at most `limit`) until no content commit is between its file and
    /// its rows; whether none is. Shutdown calls it before [`Store::close`].
    pub async fn settle_commits(&self, limit: std::time::Duration) -> bool {
        self.commits.wait_idle(limit).await
    }

    /// Stops the index writer, then writes the last-read times still in
    /// memory; the last step of shutdown.
    pub fn close(self) {
        let touched = self.access.snapshot();
        self.meta.close_after(move |txn| {
            access::write_access(txn, &touched)?;
            Ok(())
        });
    }
}
