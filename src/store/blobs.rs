//! Content-addressed files: `blobs/sha256/ab/abcd…`, one immutable file per digest.
//! New content goes to `tmp/`, is hashed while written, fsynced and renamed into
//! place; nothing half-written is ever at a `blobs/` path.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::StoreError;
use crate::oci::{Digest, DigestHasher};

/// Bytes gathered before one blocking write+hash hop.
const FLUSH_AT: usize = 1 << 20;

/// The two directories under `storage.root` that hold content.
#[derive(Debug, Clone)]
pub struct BlobFiles {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobFiles {
    /// The content directories of `root`; nothing is touched on disk (start-up
    /// decides with the index whether `blobs/` may be created, see
    /// [`BlobFiles::prepare`]).
    pub fn new(root: &Path) -> BlobFiles {
        BlobFiles {
            blobs: root.join("blobs").join("sha256"),
            tmp: root.join("tmp"),
        }
    }

    /// Empties `tmp/` (nothing in it survives a restart: uploads and downloads
    /// in flight then are gone by design) and, when `create_blobs`, creates
    /// `blobs/sha256`. Returns whether `blobs/sha256` is there: it must not be
    /// created when the index names content, because a missing directory then
    /// means an unmounted volume or a wrong symlink, not an empty store.
    pub fn prepare(&self, create_blobs: bool) -> Result<bool, StoreError> {
        if self.tmp.exists() {
            std::fs::remove_dir_all(&self.tmp)?;
        }
        std::fs::create_dir_all(&self.tmp)?;
        if create_blobs {
            std::fs::create_dir_all(&self.blobs)?;
        }
        Ok(self.blobs.is_dir())
    }

    /// `blobs/sha256`, the root of the content files.
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// Where the file of `digest` lives. Safe: a `Digest` is 64 hex characters.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// The temp directory, also for readiness checks.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Starts a new temp file, created now: a download's readers open it by path
    /// before the first byte arrives.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let path = self.tmp.join(super::random_hex()?);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(self.writer_at(path, Some(file)))
    }

    /// Starts a new temp file that is created only when the first byte arrives
    /// (an upload session that never receives one costs no file and no
    /// descriptor). Does no I/O.
    pub fn lazy_writer(&self) -> Result<BlobWriter, StoreError> {
        let path = self.tmp.join(super::random_hex()?);
        Ok(self.writer_at(path, None))
    }

    fn writer_at(&self, path: PathBuf, file: Option<File>) -> BlobWriter {
        let open = file.is_some();
        BlobWriter {
            files: self.clone(),
            path: path.clone(),
            sink: Arc::new(Mutex::new(Sink {
                created: open,
                file,
                path,
                failed: None,
            })),
            hasher: Arc::new(Mutex::new(DigestHasher::new())),
            pending: Vec::new(),
            pending_len: 0,
            accepted: 0,
            inflight: None,
            committed: false,
            inflight_len: 0,
            open,
        }
    }

    /// Every file under `blobs/sha256`, sorted into content files (a digest
    /// name in its fan-out directory) and strays (anything else), for start-up
    /// reconciliation. Nothing is moved or removed here. A fan-out directory
    /// may be a symlink (to another disk), as `blobs/` itself may; one that
    /// leads nowhere is content out of reach, which stops start-up rather than
    /// being set aside as a stray (its blobs' rows would be dropped).
    pub fn scan(&self) -> Result<Scan, StoreError> {
        let mut out = Scan::default();
        for fan in std::fs::read_dir(&self.blobs)? {
            let fan = fan?;
            let fan_name = fan.file_name();
            let fan_named = fan_name
                .to_str()
                .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()));
            let fan_ok = fan_named && fan.path().is_dir();
            if fan_named && !fan_ok && fan.file_type()?.is_symlink() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{} is a symlink that does not lead to a directory: check that \
                         the volume it points to is mounted",
                        fan.path().display()
                    ),
                )
                .into());
            }
            if !fan_ok {
                out.strays.push(fan.path());
                continue;
            }
            for f in std::fs::read_dir(fan.path())? {
                let f = f?;
                let name = f.file_name();
                let digest = name
                    .to_str()
                    .filter(|n| n.get(..2) == fan_name.to_str())
                    .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                    .filter(|_| f.path().is_file());
                match digest {
                    Some(d) => out.content.push(d),
                    None => out.strays.push(f.path()),
                }
            }
        }
        Ok(out)
    }

    /// Removes a content file; a missing file is fine (metadata goes first, files after).
    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// What [`BlobFiles::scan`] found under `blobs/sha256`.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files named by their digest, where [`BlobFiles::path`] looks for them.
    pub content: Vec<Digest>,
    /// Everything else (wrong names, misplaced files, unexpected directories).
    pub strays: Vec<PathBuf>,
}

struct Sink {
    /// Open while bytes are being written; closed by [`BlobWriter::park`] and
    /// before the first byte of a lazy writer.
    file: Option<File>,
    /// Whether the temp file exists yet.
    created: bool,
    path: PathBuf,
    failed: Option<Arc<std::io::Error>>,
}

impl Sink {
    /// The open file: created at the first write, reopened for append after a park.
    fn file(&mut self) -> std::io::Result<&mut File> {
        let file = match self.file.take() {
            Some(f) => f,
            None if self.created => std::fs::OpenOptions::new().append(true).open(&self.path)?,
            None => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&self.path)?;
                self.created = true;
                f
            }
        };
        Ok(self.file.insert(file))
    }
}

/// An in-progress content file. Bytes are written and hashed in 1 MiB steps on
/// two blocking threads at once (hashing costs as much CPU as the write, and
/// the two need not wait for each other); a request future cancelled mid-step
/// leaves the writer consistent (the step finishes and the next call waits for
/// it). Dropped without `commit`, the temp file is removed. Between requests an
/// upload [parks](BlobWriter::park) its writer: the file is closed, the running
/// hash stays in memory.
pub struct BlobWriter {
    files: BlobFiles,
    path: PathBuf,
    sink: Arc<Mutex<Sink>>,
    hasher: Arc<Mutex<DigestHasher>>,
    pending: Vec<Bytes>,
    pending_len: usize,
    accepted: u64,
    inflight: Option<[JoinHandle<()>; 2]>,
    committed: bool,
    inflight_len: u64,
    /// Whether the file may be open (false before the first byte and after a park).
    open: bool,
}

impl BlobWriter {
    /// Bytes accepted so far (the upload offset).
    pub fn len(&self) -> u64 {
        self.accepted
    }

    /// Bytes already in the file (readable through another handle).
    pub fn flushed(&self) -> u64 {
        if self.inflight.is_some() {
            self.accepted - self.pending_len as u64 - self.inflight_len
        } else {
            self.accepted - self.pending_len as u64
        }
    }

    /// The temp file, for readers that follow a download as it grows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True before any byte arrived.
    pub fn is_empty(&self) -> bool {
        self.accepted == 0
    }

    /// Whether the writer holds neither an open file nor unwritten bytes (what
    /// [`BlobWriter::park`] leaves).
    pub fn is_parked(&self) -> bool {
        !self.open && self.pending.is_empty() && self.inflight.is_none()
    }

    /// Writes out everything accepted so far and closes the file, so an idle
    /// upload session holds no file descriptor between requests; the running
    /// hash stays in memory and the next write reopens the file for append.
    /// The file is closed even when the last write failed (the failure is
    /// returned, and again by the next write).
    pub async fn park(&mut self) -> Result<(), StoreError> {
        if self.is_parked() {
            return Ok(());
        }
        let flushed = self.flush().await;
        let sink = self.sink.clone();
        let closed = tokio::task::spawn_blocking(move || {
            sink.lock().map_err(|_| StoreError::Poisoned)?.file = None;
            Ok::<(), StoreError>(())
        })
        .await;
        closed??;
        self.open = false;
        flushed
    }

    /// Appends a chunk.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.accepted += chunk.len() as u64;
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= FLUSH_AT {
            self.start_flush().await?;
        }
        Ok(())
    }

    async fn settle(&mut self) -> Result<(), StoreError> {
        if let Some([write, hash]) = self.inflight.take() {
            self.inflight_len = 0;
            let (w, h) = tokio::join!(write, hash);
            w?;
            h?;
        }
        let failed = self
            .sink
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .failed
            .clone();
        match failed {
            Some(e) => Err(StoreError::Io(e)),
            None => Ok(()),
        }
    }

    /// Everything accepted so far is in the file when this returns.
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.start_flush().await?;
        self.settle().await
    }

    /// Hands the pending bytes to a blocking write+hash step and returns without
    /// waiting for it (only for the step before), so the next bytes can arrive
    /// while this step runs: receiving and writing overlap.
    async fn start_flush(&mut self) -> Result<(), StoreError> {
        self.settle().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let bufs = std::mem::take(&mut self.pending);
        self.inflight_len = self.pending_len as u64;
        self.pending_len = 0;
        let sink = self.sink.clone();
        let hash_bufs = bufs.clone();
        self.open = true;
        let write = tokio::task::spawn_blocking(move || {
            let Ok(mut s) = sink.lock() else { return };
            if s.failed.is_some() {
                return;
            }
            if let Err(e) = s.file().and_then(|f| write_all_vectored(f, &bufs)) {
                s.failed = Some(Arc::new(e));
            }
        });
        let hasher = self.hasher.clone();
        let hash = tokio::task::spawn_blocking(move || {
            // A poisoned hasher is reported by verify/commit.
            if let Ok(mut h) = hasher.lock() {
                for b in &hash_bufs {
                    h.update(b);
                }
            }
        });
        self.inflight = Some([write, hash]);
        Ok(())
    }

    /// Writes out everything accepted so far (readers of the file see it after).
    pub async fn sync_pending(&mut self) -> Result<(), StoreError> {
        self.flush().await
    }

    /// Checks everything written so far against `expected` without finishing
    /// the file (a download releases its last bytes once this passes, and makes
    /// them durable afterwards).
    pub async fn verify(&mut self, expected: &Digest) -> Result<(), StoreError> {
        self.flush().await?;
        let hasher = self.hasher.clone();
        let expected = expected.clone();
        tokio::task::spawn_blocking(move || {
            let h = hasher.lock().map_err(|_| StoreError::Poisoned)?;
            let actual = h.clone().finish();
            if actual == expected {
                Ok(())
            } else {
                Err(StoreError::DigestMismatch { expected, actual })
            }
        })
        .await?
    }

    /// Finishes the file: fsync, verify against `expected` (if given), rename into
    /// `blobs/`. Returns the digest and size. On a mismatch the temp file is dropped.
    pub async fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        self.flush().await?;
        let sink = self.sink.clone();
        let hasher = self.hasher.clone();
        let files = self.files.clone();
        let tmp = self.path.clone();
        let expected = expected.cloned();
        let size = self.accepted;
        let digest = tokio::task::spawn_blocking(move || -> Result<Digest, StoreError> {
            let mut s = sink.lock().map_err(|_| StoreError::Poisoned)?;
            let digest = hasher
                .lock()
                .map_err(|_| StoreError::Poisoned)?
                .clone()
                .finish();
            if let Some(exp) = &expected {
                if *exp != digest {
                    return Err(StoreError::DigestMismatch {
                        expected: exp.clone(),
                        actual: digest,
                    });
                }
            }
            // A lazy writer that never received a byte (the empty blob) creates
            // its file here.
            s.file()?.sync_all()?;
            s.file = None;
            let dest = files.path(&digest);
            let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
            if dest.exists() {
                // Same digest, same bytes: the existing file stays.
                let _ = std::fs::remove_file(&tmp);
            } else {
                // Only the fan-out level is created here: if `blobs/sha256`
                // itself is gone (an unmounted volume), the commit fails rather
                // than filling a fresh directory the volume will hide.
                let fan_created = match std::fs::create_dir(&dir) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(e.into()),
                };
                std::fs::rename(&tmp, &dest)?;
                File::open(&dir)?.sync_all()?;
                if fan_created {
                    // A new fan-out directory is itself an entry of its parent:
                    // without this fsync a crash could lose the directory and
                    // with it the file the index is about to name.
                    if let Some(parent) = dir.parent() {
                        File::open(parent)?.sync_all()?;
                    }
                }
            }
            Ok(digest)
        })
        .await??;
        self.committed = true;
        Ok((digest, size))
    }
}

/// Writes every buffer in order with as few syscalls as the kernel allows.
fn write_all_vectored(file: &mut File, bufs: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            // unlink is cheap; a step still in flight writes to an unlinked file.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
