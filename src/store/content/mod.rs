//! The content seam: where blob bytes live, behind [`BlobBackend`].
//!
//! Everything above this module talks to a [`Content`] handle by digest and
//! gets opaque values back ([`BlobReader`], [`BlobWriter`], [`Scan`]); no
//! path or file handle of content leaves `content/`. New bytes are always
//! staged in `<root>/tmp/` (hashed while written, readable while they grow, so
//! a download can be followed), whatever the backend; the backend takes a
//! staged file over once it is verified ([`BlobBackend::publish`]) and serves,
//! re-hashes, quarantines and removes it by digest from then on. Nothing
//! outside this module may know where content lives: reads go through
//! [`Content::open`] and [`Content::read_small`], checks through
//! [`Content::hash`], removals through [`Content::remove_many`].
//!
//! Backends: `fs.rs` (`blobs/sha256/ab/abcd…` under the data directory) and
//! `s3.rs` (`<prefix>blobs/sha256/<hex>` in a bucket). A
//! backend is one file implementing [`BlobBackend`] and handed to
//! [`Content::new`]; nothing else changes.

pub mod backup;
mod fs;
mod layout;
pub(super) mod lost_found;
mod pace;
mod reader;
mod s3;
mod writer;
mod zero_copy;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::StoreError;
use crate::oci::Digest;

pub use backup::{BackupDir, Exported};
pub use fs::FsBackend;
pub use pace::Pace;
pub use reader::{BlobReader, Chunks, Pending, ReadAt};
pub use s3::{S3Backend, S3Settings};
pub use writer::BlobWriter;
pub use zero_copy::ZeroCopy;

/// A boxed future, so [`BlobBackend`] can be used as a trait object (one
/// `Content` type whatever the backend, no generics through `Store`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes read per step by readers that stream content (response bodies,
/// followers of a download): bounded memory per reader whatever the blob size.
pub const READ_CHUNK: usize = 256 * 1024;

/// Where verified content lives. Every method may do I/O and runs it off the
/// runtime (blocking threads for files, async calls for an object store).
pub trait BlobBackend: Send + Sync + 'static {
    /// Start-up: makes sure the content location exists, creating it only
    /// when `create` (the index names no content). Returns whether it is
    /// there: a missing location while the index names content means an
    /// unmounted volume or a wrong symlink, not an empty store.
    fn prepare(&self, create: bool) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Whether start-up walks the content ([`BlobBackend::scan`]) to settle
    /// it against the index. A bucket shared by several nodes is never listed
    /// whole at start (its size is unbounded and other nodes write to it):
    /// such a backend answers false, and start-up neither drops rows nor sets
    /// content aside.
    fn scans_at_start(&self) -> bool {
        true
    }

    /// Start-up: every stored digest, and anything else found where content
    /// lives. Nothing is moved or removed here.
    fn scan(&self) -> BoxFuture<'_, Result<Scan, StoreError>>;

    /// Start-up: sets aside content without index rows (`orphans`) and
    /// `strays`, never deleting them (a wrong guess must stay reversible).
    fn set_aside(
        &self,
        orphans: Vec<Digest>,
        strays: Vec<Stray>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Where content lives, for messages (a directory, a bucket URL).
    fn location(&self) -> String;

    /// Takes over a staged file whose bytes hash to `digest`, durably. When
    /// `digest` is stored already, what is stored must end up holding the
    /// staged bytes (content at rest may have rotted since it was stored:
    /// never adopt it unchecked); whatever is left of the staged file is the
    /// caller's to drop.
    fn publish<'a>(
        &'a self,
        staged: &'a Staged,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Opens stored content for reading; `None` when it is not stored.
    fn open<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<BlobReader>, StoreError>>;

    /// Removes stored content; absent content is fine (rows go first, content after).
    /// A backend shared by several nodes keeps it (another node may name it);
    /// see `S3Backend`.
    fn remove<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes many stored digests at once, absent ones being fine: what gc,
    /// eviction and start-up use, so a sweep of 50,000 blobs costs a few
    /// round trips (one blocking hop per call for files, a bulk delete for an
    /// object store), not 50,000. Every digest is tried; the first failure is
    /// returned after the others were removed.
    fn remove_many(&self, digests: Vec<Digest>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Re-hashes the stored bytes (streamed, bounded memory, at the rate of
    /// `pace`), for verify. [`StoreError::BlobUnknown`] when the content is
    /// not stored.
    fn hash<'a>(
        &'a self,
        digest: &'a Digest,
        pace: &'a mut Pace,
    ) -> BoxFuture<'a, Result<Hashed, StoreError>>;

    /// Moves stored content out of what is served into quarantine (kept for
    /// inspection, never served; an earlier quarantined copy of the same
    /// digest is kept too). Returns where it went, for messages (None: it was
    /// not stored).
    fn quarantine<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;

    /// Bytes the stored content takes; `None` when it is not stored.
    fn size_on_disk<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;

    /// Puts stored content into a backup being written (`wharf backup`):
    /// hard-linked where the backup shares the content's filesystem, copied
    /// otherwise, hashed either way and refused unless it matches `digest`.
    /// [`StoreError::BlobUnknown`] when the content is not stored.
    fn export<'a>(
        &'a self,
        digest: &'a Digest,
        to: &'a Arc<BackupDir>,
    ) -> BoxFuture<'a, Result<Exported, StoreError>>;

    /// A URL from which a client may GET the stored content for `ttl`
    /// without wharf in between (a presigned object URL); `None` when this
    /// backend has none (local files).
    fn presigned_get<'a>(
        &'a self,
        digest: &'a Digest,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let _ = (digest, ttl);
        Box::pin(async { Ok(None) })
    }

    /// Takes over a file from outside the store (`wharf import --link`: a
    /// `registry:2` blob) by hard link, where content lives in local files on
    /// the source's filesystem: the link is hashed and published only when it
    /// hashes to `digest` ([`StoreError::DigestMismatch`] otherwise, nothing
    /// kept). [`Adopted::NotLinked`] when this backend cannot link it
    /// (another filesystem, an object store): the caller copies instead. The
    /// source is never written; callers check it is a regular file first.
    fn adopt_link<'a>(
        &'a self,
        source: &'a Path,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Adopted, StoreError>> {
        let _ = (source, digest);
        Box::pin(async { Ok(Adopted::NotLinked) })
    }
}

/// What [`BlobBackend::adopt_link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Hard-linked, verified and published; this many bytes.
    Linked(u64),
    /// Not linked (another filesystem, or a backend that cannot): copy it.
    NotLinked,
}

/// What re-hashing stored content found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// What the bytes hash to.
    pub digest: Digest,
    /// How many bytes there are.
    pub size: u64,
}

/// A staged file in `tmp/`, complete, fsynced and verified, handed to
/// [`BlobBackend::publish`].
pub struct Staged {
    path: PathBuf,
}

impl Staged {
    /// The staged file; only backends (inside `content/`) see it.
    pub(in crate::store::content) fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`BlobBackend::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Content stored under its digest.
    pub content: Vec<Digest>,
    /// Everything else (wrong names, misplaced files, unexpected directories).
    pub strays: Vec<Stray>,
}

/// Something found where content lives that is not content, named for logs;
/// only its backend can act on it.
#[derive(Debug)]
pub struct Stray(PathBuf);

impl std::fmt::Display for Stray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

/// Space on the data directory's filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// Size of the filesystem.
    pub total: u64,
}

/// The content handle `Store` holds: the staging directory and the backend.
/// Cheap to clone.
#[derive(Clone)]
pub struct Content {
    backend: Arc<dyn BlobBackend>,
    tmp: Arc<PathBuf>,
}

impl Content {
    /// Content under the data directory `root` on the local filesystem
    /// (`blobs/sha256/…`). Nothing is touched on disk (start-up decides with
    /// the index whether the content directory may be created, see
    /// [`Content::prepare`]).
    pub fn fs(root: &Path) -> Content {
        Content::new(root, Arc::new(FsBackend::new(root)))
    }

    /// Content in `backend`, staged under `root/tmp`.
    pub fn new(root: &Path, backend: Arc<dyn BlobBackend>) -> Content {
        Content {
            backend,
            tmp: Arc::new(root.join("tmp")),
        }
    }

    /// Start-up: empties `tmp/` (nothing in it survives a restart: uploads
    /// and downloads in flight then are gone by design), then lets the backend
    /// prepare (see [`BlobBackend::prepare`]).
    pub async fn prepare(&self, create: bool) -> Result<bool, StoreError> {
        let tmp = self.tmp.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            if tmp.exists() {
                std::fs::remove_dir_all(tmp.as_path())?;
            }
            std::fs::create_dir_all(tmp.as_path())?;
            Ok(())
        })
        .await??;
        self.backend.prepare(create).await
    }

    /// See [`BlobBackend::scans_at_start`].
    pub fn scans_at_start(&self) -> bool {
        self.backend.scans_at_start()
    }

    /// See [`BlobBackend::scan`].
    pub async fn scan(&self) -> Result<Scan, StoreError> {
        self.backend.scan().await
    }

    /// See [`BlobBackend::set_aside`].
    pub async fn set_aside(
        &self,
        orphans: Vec<Digest>,
        strays: Vec<Stray>,
    ) -> Result<(), StoreError> {
        self.backend.set_aside(orphans, strays).await
    }

    /// See [`BlobBackend::location`].
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Whether staging is writable (what `/readyz` checks): writes and
    /// removes a probe file of its own name (concurrent probes must not remove
    /// each other's file).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let tmp = self.tmp.join(format!(".ready-{}", super::random_hex()?));
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            std::fs::write(&tmp, b"ok")?;
            std::fs::remove_file(&tmp)?;
            Ok(())
        })
        .await?
    }

    /// Free and total bytes of the filesystem holding the data directory
    /// (where staging, the index and local content live): what an operator
    /// alerts on before writes start failing. One `statvfs`, off the runtime.
    pub async fn disk_space(&self) -> Result<DiskSpace, StoreError> {
        let tmp = self.tmp.clone();
        tokio::task::spawn_blocking(move || -> Result<DiskSpace, StoreError> {
            let s = rustix::fs::statvfs(tmp.as_path()).map_err(std::io::Error::from)?;
            Ok(DiskSpace {
                free: s.f_bavail.saturating_mul(s.f_frsize),
                total: s.f_blocks.saturating_mul(s.f_frsize),
            })
        })
        .await?
    }

    /// Starts a new staged file, created now: followers of a download read it
    /// (through [`BlobWriter::reader`]) before the first byte arrives. Blocks
    /// on the file creation: call it off the runtime.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let path = self.tmp.join(super::random_hex()?);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(BlobWriter::new(self.backend.clone(), path, Some(file)))
    }

    /// Starts a new staged file that is created only when the first byte
    /// arrives (an upload session that never receives one costs no file and
    /// no descriptor). Does no I/O.
    pub fn lazy_writer(&self) -> Result<BlobWriter, StoreError> {
        let path = self.tmp.join(super::random_hex()?);
        Ok(BlobWriter::new(self.backend.clone(), path, None))
    }

    /// See [`BlobBackend::open`].
    pub async fn open(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        self.backend.open(digest).await
    }

    /// Reads stored content whole, for small content only (manifests: at most
    /// `limit` bytes, refused beyond). `None` when it is not stored.
    pub async fn read_small(
        &self,
        digest: &Digest,
        size: u64,
        limit: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        if size > limit as u64 {
            return Err(StoreError::SizeInvalid(format!(
                "{digest} is {size} bytes, more than the {limit} this read allows"
            )));
        }
        match self.open(digest).await? {
            Some(r) => Ok(Some(r.read(0, size as usize).await?)),
            None => Ok(None),
        }
    }

    /// See [`BlobBackend::remove`].
    pub async fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        self.backend.remove(digest).await
    }

    /// See [`BlobBackend::remove_many`]; nothing to do costs nothing.
    pub async fn remove_many(&self, digests: Vec<Digest>) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        self.backend.remove_many(digests).await
    }

    /// See [`BlobBackend::hash`].
    pub async fn hash(&self, digest: &Digest, pace: &mut Pace) -> Result<Hashed, StoreError> {
        self.backend.hash(digest, pace).await
    }

    /// See [`BlobBackend::quarantine`].
    pub async fn quarantine(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        self.backend.quarantine(digest).await
    }

    /// See [`BlobBackend::presigned_get`].
    pub async fn presigned_get(
        &self,
        digest: &Digest,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        self.backend.presigned_get(digest, ttl).await
    }

    /// See [`BlobBackend::adopt_link`].
    pub async fn adopt_link(&self, source: &Path, digest: &Digest) -> Result<Adopted, StoreError> {
        self.backend.adopt_link(source, digest).await
    }

    /// See [`BlobBackend::size_on_disk`].
    pub async fn size_on_disk(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        self.backend.size_on_disk(digest).await
    }

    /// See [`BlobBackend::export`].
    pub async fn export(
        &self,
        digest: &Digest,
        to: &Arc<BackupDir>,
    ) -> Result<Exported, StoreError> {
        self.backend.export(digest, to).await
    }
}
