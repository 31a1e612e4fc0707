//! [`BlobWriter`]: new content staged in `tmp/`, hashed while written, and
//! handed to the backend once verified. Nothing half-written is ever where
//! content is served from.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::{BlobBackend, BlobReader, Staged};
use crate::oci::{Digest, DigestHasher};
use crate::store::StoreError;

/// Bytes gathered before one blocking write+hash hop.
const FLUSH_AT: usize = 1 << 20;

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
    backend: Arc<dyn BlobBackend>,
    path: PathBuf,
    sink: Arc<Mutex<Sink>>,
    hasher: Arc<Mutex<DigestHasher>>,
    pending: Vec<Bytes>,
    pending_len: usize,
    accepted: u64,
    inflight: Option<[JoinHandle<()>; 2]>,
    inflight_len: u64,
    /// Whether the file may be open (false before the first byte and after a park).
    open: bool,
}

impl BlobWriter {
    /// A writer staging into `path`, already created when `file` is given.
    pub(super) fn new(
        backend: Arc<dyn BlobBackend>,
        path: PathBuf,
        file: Option<File>,
    ) -> BlobWriter {
        let open = file.is_some();
        BlobWriter {
            backend,
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
            inflight_len: 0,
            open,
        }
    }

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

    /// A reader of the staged file, for followers of a download: it reads
    /// the bytes already [flushed](BlobWriter::flushed) while more arrive, and
    /// keeps working after the file is published or dropped.
    pub async fn reader(&self) -> Result<BlobReader, StoreError> {
        let path = self.path.clone();
        let file = tokio::task::spawn_blocking(move || File::open(path)).await??;
        Ok(super::fs::file_reader(file))
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

    /// Finishes the file: fsync, verify against `expected` (if given), hand it
    /// to the backend. Returns the digest and size. On a mismatch (or any
    /// failure) the staged file is dropped.
    pub async fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        self.flush().await?;
        let sink = self.sink.clone();
        let hasher = self.hasher.clone();
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
            Ok(digest)
        })
        .await??;
        let staged = Staged {
            path: self.path.clone(),
        };
        self.backend.publish(&staged, &digest).await?;
        // Whatever the backend left of the staged file goes with the writer.
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
        // The staged file never outlives its writer: published (renamed away,
        // or uploaded), found stored already, or abandoned. unlink is cheap; a
        // step still in flight writes to an unlinked file.
        let _ = std::fs::remove_file(&self.path);
    }
}
