//! The redb index: record types, blocking reads moved off the runtime, and one
//! writer thread that commits queued writes in batches (group commit), because redb
//! allows a single writer and each commit costs an fsync.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::tables;

/// Where content came from; eviction only ever touches `Cached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Pushed by a user; removed only by delete + gc.
    Pushed,
    /// Mirrored from an upstream or peer.
    Cached,
}

/// One content file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Bytes on disk.
    pub size: u64,
    /// Unix seconds when first stored.
    pub created: u64,
    /// Pushed or cached.
    pub origin: Origin,
    /// Pinned content is never evicted.
    #[serde(default)]
    pub pinned: bool,
}

/// One manifest in one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// Served as Content-Type.
    pub media_type: String,
    /// Bytes.
    pub size: u64,
    /// OCI 1.1 subject, kept so deleting the manifest removes its referrers entry.
    #[serde(default)]
    pub subject: Option<String>,
    /// OCI 1.1 artifact type.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// One tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRecord {
    /// The manifest it points at.
    pub digest: String,
    /// Unix seconds of the last change.
    pub updated: u64,
    /// Unix seconds of the last upstream revalidation (mirrored tags only).
    #[serde(default)]
    pub checked: Option<u64>,
}

/// One open upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Repository it was started in.
    pub repo: String,
    /// Unix seconds.
    pub started: u64,
}

/// One repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoRecord {
    /// Pushed (hosted) or cached (mirrored).
    pub origin: Origin,
    /// The upstream a mirrored repo comes from.
    #[serde(default)]
    pub upstream: Option<String>,
}

/// The digests one manifest names, split by what they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefsRecord {
    /// Blobs: an image's config and layers.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Child manifests of an index (in the same repository).
    #[serde(default)]
    pub manifests: Vec<String>,
    /// The references cannot be known (the start-up migration found the
    /// manifest's content missing or unparsable): whoever follows them keeps
    /// everything linked in the manifest's repository instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

impl RefsRecord {
    /// The references of a parsed manifest (foreign layers included: listing
    /// more than is stored only keeps more alive).
    pub fn of(view: &crate::oci::ManifestView) -> RefsRecord {
        RefsRecord {
            blobs: view.blobs.iter().map(|d| d.digest.to_string()).collect(),
            manifests: view.children.iter().map(|d| d.digest.to_string()).collect(),
            unknown: false,
        }
    }

    /// The record of a manifest whose references cannot be known.
    pub fn unknown() -> RefsRecord {
        RefsRecord {
            unknown: true,
            ..RefsRecord::default()
        }
    }
}

/// One pin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinRecord {
    /// The local repository.
    pub repo: String,
    /// The manifest pinned (for a tag pin: what the tag pointed at when pinned).
    pub digest: String,
    /// For a tag pin, the tag: whatever it points at later is protected too.
    #[serde(default)]
    pub tag: Option<String>,
    /// Unix seconds.
    pub created: u64,
}

/// Encodes a record for a table value.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a table value; a damaged value is an error, never a panic.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

trait WriteJob: Send {
    /// Runs the job's writes; false if it failed (its result holds the error).
    fn apply(&mut self, txn: &WriteTransaction) -> bool;
    /// Delivers the outcome once the transaction it ran in is settled.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Job<T, F> {
    f: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send, F: FnMut(&WriteTransaction) -> Result<T, StoreError> + Send> WriteJob for Job<T, F> {
    fn apply(&mut self, txn: &WriteTransaction) -> bool {
        let r = (self.f)(txn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let out = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Corrupt("write job never ran".into())),
        };
        // The requester may have gone away; its write still happened.
        let _ = self.reply.send(out);
    }
}

/// Most jobs folded into one transaction.
const MAX_BATCH: usize = 512;

/// Handle to the index. Cheap to clone.
#[derive(Clone)]
pub struct Meta {
    db: Arc<Database>,
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// Counts committed write transactions; see [`Meta::generation`].
    generation: Arc<AtomicU64>,
}

impl Meta {
    /// Opens (or creates) the index and every table, and starts the writer thread.
    pub fn open(path: &Path) -> Result<Meta, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(tables::BLOBS)?;
            txn.open_table(tables::REPO_BLOBS)?;
            txn.open_table(tables::MANIFESTS)?;
            txn.open_table(tables::TAGS)?;
            txn.open_table(tables::REFERRERS)?;
            txn.open_table(tables::UPLOADS)?;
            txn.open_table(tables::REPOS)?;
            txn.open_table(tables::MANIFEST_REFS)?;
            txn.open_table(tables::ACCESS)?;
            txn.open_table(tables::PINS)?;
            txn.open_table(tables::SWEEPING)?;
            txn.open_table(tables::SCHEMA)?;
            txn.open_table(tables::REPLICATION_QUEUE)?;
            txn.open_table(tables::SYNC_STATE)?;
        }
        txn.commit()?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(4096);
        let thread_db = db.clone();
        let generation = Arc::new(AtomicU64::new(0));
        let thread_generation = generation.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-index-writer".into())
            .spawn(move || writer_loop(&thread_db, &thread_generation, rx))?;
        Ok(Meta {
            db,
            writer: tx,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            generation,
        })
    }

    /// The index's write generation: it grows after every committed write,
    /// before the writer hears back. What a read transaction started after
    /// loading generation `g` saw stays true while the generation is still
    /// `g`, which is how in-memory answers derived from the index (the hot
    /// manifest lookups) know they are current without reading it again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs a read-only closure on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await?
    }

    /// Queues a write closure and waits until the batch it landed in is committed.
    /// The closure must check before it writes: if it fails, its batch is retried
    /// job by job and its own partial writes are rolled back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Job {
            f,
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer after the queued writes and waits for it; the database
    /// closes when the last handle drops. Part of the ordered shutdown.
    pub fn close(self) {
        self.close_after(|_| Ok(()));
    }

    /// [`Meta::close`], with one last transaction `last` run on the calling
    /// thread once the writer has stopped (state kept in memory until then,
    /// such as last-read times). A failure is logged: shutdown goes on.
    pub fn close_after<F>(self, last: F)
    where
        F: FnOnce(&WriteTransaction) -> Result<(), StoreError>,
    {
        let Meta {
            db,
            writer,
            thread,
            generation,
        } = self;
        drop(writer);
        let handle = thread.lock().ok().and_then(|mut g| g.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        let done = db.begin_write().map_err(StoreError::from).and_then(|txn| {
            last(&txn)?;
            txn.commit().map_err(StoreError::from)
        });
        generation.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = done {
            tracing::warn!(error = %e, "last index write at shutdown failed");
        }
        drop(db);
    }
}

fn writer_loop(db: &Database, generation: &AtomicU64, mut rx: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        run_batch(db, generation, batch);
    }
}

/// Commits `txn`, then moves the generation on (whatever the outcome: a
/// failed commit may still have changed what readers see), all before any
/// job of the batch hears back.
fn commit(txn: WriteTransaction, generation: &AtomicU64) -> Result<(), StoreError> {
    let r = txn.commit().map_err(StoreError::from);
    generation.fetch_add(1, Ordering::AcqRel);
    r
}

fn run_batch(db: &Database, generation: &AtomicU64, mut batch: Vec<Box<dyn WriteJob>>) {
    let txn = match db.begin_write() {
        Ok(t) => t,
        Err(e) => {
            let err = StoreError::from(e);
            for j in batch {
                j.finish(Err(err.clone()));
            }
            return;
        }
    };
    let all_ok = batch.iter_mut().all(|j| j.apply(&txn));
    if all_ok {
        let r = commit(txn, generation);
        for j in batch {
            j.finish(r.clone());
        }
        return;
    }
    // One job failed part-way: undo the batch and give each job its own transaction
    // so one bad request cannot take others' writes with it.
    let _ = txn.abort();
    for mut j in batch {
        match db.begin_write() {
            Ok(txn) => {
                if j.apply(&txn) {
                    let r = commit(txn, generation);
                    j.finish(r);
                } else {
                    let _ = txn.abort();
                    j.finish(Ok(()));
                }
            }
            Err(e) => j.finish(Err(StoreError::from(e))),
        }
    }
}
