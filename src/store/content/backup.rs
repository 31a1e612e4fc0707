//! Backup destinations: a directory laid out like a data directory
//! (`index.redb`, `blobs/sha256/ab/abcd…`), written under `DEST.partial` and
//! renamed to `DEST` only once everything in it is complete and fsynced, so a
//! `DEST` never looks complete unless it is. `DEST.partial` holds a marker
//! file while it is written: one a killed backup left behind is recognised
//! (and removed) by the next backup to the same `DEST`; anything else there
//! is refused, never overwritten.
//!
//! Content goes in by `export_file`: a hard link when `DEST` shares the data
//! directory's filesystem (content files are immutable, so a link is a
//! consistent copy and costs no space), a streamed copy otherwise (or always,
//! when asked: a link shares the disk blocks, so it does not survive the disk).
//! Either way the bytes are hashed on a blocking thread and must match the
//! digest before the file counts.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::layout::layout_path;
use crate::oci::{Digest, DigestHasher};
use crate::store::StoreError;

/// The marker that says "this directory is a backup being written".
const MARKER: &str = ".wharf-backup-incomplete";

/// Bytes copied and hashed per read.
const COPY_CHUNK: usize = 1 << 20;

/// A backup being written: where it goes and how content gets there.
#[derive(Debug)]
pub struct BackupDir {
    dest: PathBuf,
    partial: PathBuf,
    blobs: PathBuf,
    /// Copy every file (never link).
    copy_only: bool,
    /// A link failed for another reason than a missing source (another
    /// filesystem, links not allowed): copy from then on.
    links_fail: AtomicBool,
}

/// How one content file got into a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Bytes the file has (hashed).
    pub size: u64,
    /// Hard-linked (true) or copied (false).
    pub linked: bool,
}

fn refuse(msg: String) -> StoreError {
    StoreError::BackupRefused(msg)
}

impl BackupDir {
    /// Checks `dest` and starts `DEST.partial` (with its marker, fsynced).
    /// `dest` must be absolute, absent or an empty directory, outside the data
    /// directory `root`, and its parent must exist. Blocking: call it off the
    /// runtime.
    pub fn create(dest: &Path, root: &Path, copy_only: bool) -> Result<BackupDir, StoreError> {
        if !dest.is_absolute() {
            return Err(refuse(format!(
                "the backup destination {} is not an absolute path (it is a path on the daemon's host)",
                dest.display()
            )));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| refuse(format!("{} names no directory", dest.display())))?;
        let parent = dest
            .parent()
            .ok_or_else(|| refuse(format!("{} names no directory", dest.display())))?;
        let parent = std::fs::canonicalize(parent).map_err(|e| {
            refuse(format!(
                "the backup destination's parent {} is not usable: {e}",
                parent.display()
            ))
        })?;
        let dest = parent.join(name);
        let root = std::fs::canonicalize(root)?;
        if dest.starts_with(&root) || root.starts_with(&dest) {
            return Err(refuse(format!(
                "the backup destination {} overlaps the data directory {}",
                dest.display(),
                root.display()
            )));
        }
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() => {
                if std::fs::read_dir(&dest)?.next().is_some() {
                    return Err(refuse(format!(
                        "the backup destination {} is not empty; a backup never overwrites",
                        dest.display()
                    )));
                }
            }
            Ok(_) => {
                return Err(refuse(format!(
                    "the backup destination {} exists and is not a directory",
                    dest.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut partial_name = name.to_os_string();
        partial_name.push(".partial");
        let partial = parent.join(partial_name);
        if std::fs::symlink_metadata(&partial).is_ok() {
            if partial.join(MARKER).is_file() {
                tracing::warn!(partial = %partial.display(), "removing what an interrupted backup left");
                std::fs::remove_dir_all(&partial)?;
            } else {
                return Err(refuse(format!(
                    "{} exists and is not an interrupted wharf backup; move it away first",
                    partial.display()
                )));
            }
        }
        std::fs::create_dir(&partial)?;
        let marker = File::create(partial.join(MARKER))?;
        marker.sync_all()?;
        let blobs = partial.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)?;
        File::open(&partial)?.sync_all()?;
        File::open(&parent)?.sync_all()?;
        Ok(BackupDir {
            dest,
            partial,
            blobs,
            copy_only,
            links_fail: AtomicBool::new(false),
        })
    }

    /// Where the backup ends up, for messages and reports.
    pub fn dest(&self) -> String {
        self.dest.display().to_string()
    }

    /// Where the index snapshot is written (inside `DEST.partial`).
    pub(in crate::store) fn index_path(&self) -> PathBuf {
        self.partial.join("index.redb")
    }

    /// Makes the backup durable and visible: fsyncs every directory written,
    /// removes the marker, renames `DEST.partial` to `DEST` (an empty `DEST`
    /// is replaced) and fsyncs the parent. Blocking.
    pub fn finish(&self) -> Result<(), StoreError> {
        File::open(self.index_path())?.sync_all()?;
        for fan in std::fs::read_dir(&self.blobs)? {
            File::open(fan?.path())?.sync_all()?;
        }
        let mut dir = self.blobs.clone();
        while dir.starts_with(&self.partial) {
            File::open(&dir)?.sync_all()?;
            if !dir.pop() {
                break;
            }
        }
        std::fs::remove_file(self.partial.join(MARKER))?;
        File::open(&self.partial)?.sync_all()?;
        std::fs::rename(&self.partial, &self.dest)?;
        if let Some(parent) = self.dest.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes `DEST.partial` after a failure (best effort, logged). Blocking.
    pub fn abandon(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.partial) {
            tracing::warn!(partial = %self.partial.display(), error = %e, "could not remove an abandoned backup");
        }
    }
}

/// A blob being copied into a backup from a stream (content that is not in
/// local files): written chunk by chunk off the runtime, hashed as it goes,
/// kept only when it hashes to its digest.
pub(super) struct CopySink {
    file: File,
    path: PathBuf,
    hasher: DigestHasher,
    size: u64,
}

impl BackupDir {
    /// Starts the backup's file of `digest`.
    pub(super) async fn copy_sink(&self, digest: &Digest) -> Result<CopySink, StoreError> {
        let path = layout_path(&self.blobs, digest);
        let p = path.clone();
        let file = tokio::task::spawn_blocking(move || -> Result<File, StoreError> {
            if let Some(fan) = p.parent() {
                std::fs::create_dir_all(fan)?;
            }
            Ok(File::create(&p)?)
        })
        .await??;
        Ok(CopySink {
            file,
            path,
            hasher: DigestHasher::new(),
            size: 0,
        })
    }
}

impl CopySink {
    /// Appends `chunk` (hashing it with the write, on a blocking thread).
    pub(super) async fn write(self, chunk: bytes::Bytes) -> Result<CopySink, StoreError> {
        let path = self.path.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<CopySink, StoreError> {
            let mut s = self;
            s.file.write_all(&chunk)?;
            s.hasher.update(&chunk);
            s.size += chunk.len() as u64;
            Ok(s)
        })
        .await?;
        if r.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        r
    }

    /// Drops what was written (the source failed).
    pub(super) async fn discard(self) {
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(&self.path)).await;
    }

    /// Syncs and checks the copy; a mismatch removes it and fails.
    pub(super) async fn finish(self, digest: &Digest) -> Result<Exported, StoreError> {
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || -> Result<Exported, StoreError> {
            let CopySink {
                file,
                path,
                hasher,
                size,
            } = self;
            let synced = file.sync_all();
            let actual = hasher.finish();
            if synced.is_err() || actual != digest {
                let _ = std::fs::remove_file(&path);
                synced?;
                return Err(StoreError::BackupFailed(format!(
                    "the stored object of {digest} hashes to {actual}: it is corrupt in the \
                     bucket; run `wharf verify` (it quarantines it), then back up again"
                )));
            }
            Ok(Exported {
                size,
                linked: false,
            })
        })
        .await?
    }
}

/// Puts the content file `src` (of `digest`) into the backup: linked or
/// copied, then hashed; a mismatch removes what was written and fails.
/// `BlobUnknown` when `src` is missing. Blocking.
pub(super) fn export_file(
    src: &Path,
    digest: &Digest,
    to: &BackupDir,
) -> Result<Exported, StoreError> {
    let dst = layout_path(&to.blobs, digest);
    if let Some(fan) = dst.parent() {
        std::fs::create_dir_all(fan)?;
    }
    let missing = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::BlobUnknown(digest.clone())
        } else {
            e.into()
        }
    };
    let mut linked = false;
    if !to.copy_only && !to.links_fail.load(Ordering::Relaxed) {
        match std::fs::hard_link(src, &dst) {
            Ok(()) => linked = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(e)),
            Err(e) => {
                tracing::info!(error = %e, "backup: content cannot be hard-linked into the destination; copying instead");
                to.links_fail.store(true, Ordering::Relaxed);
            }
        }
    }
    let hashed = if linked {
        hash_file(&dst)
    } else {
        let input = File::open(src).map_err(missing)?;
        copy_hashing(input, &dst)
    };
    let (actual, size) = match hashed {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&dst);
            return Err(e);
        }
    };
    if actual != *digest {
        let _ = std::fs::remove_file(&dst);
        return Err(StoreError::BackupFailed(format!(
            "the content file of {digest} hashes to {actual}: it is corrupt in the data \
             directory; run `wharf verify` (it quarantines it), then back up again"
        )));
    }
    Ok(Exported { size, linked })
}

fn hash_file(path: &Path) -> Result<(Digest, u64), StoreError> {
    let mut file = File::open(path)?;
    let mut hasher = DigestHasher::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        let n = read_some(&mut file, &mut buf)?;
        if n == 0 {
            return Ok((hasher.finish(), size));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// Copies `input` to a new file `dst`, hashing as it goes; fsyncs it.
fn copy_hashing(mut input: File, dst: &Path) -> Result<(Digest, u64), StoreError> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let mut hasher = DigestHasher::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut size = 0u64;
    loop {
        let n = read_some(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    out.sync_all()?;
    Ok((hasher.finish(), size))
}

fn read_some(file: &mut File, buf: &mut [u8]) -> Result<usize, StoreError> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}
