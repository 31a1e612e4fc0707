//! One download per digest, whoever asks. The first request starts a download
//! task that is not tied to its connection; it writes `tmp/` while hashing and
//! publishes how much is durably in the file. Every requester, first or later,
//! streams from that file as it grows. The last byte is released only after the
//! digest verified; on a mismatch every reader gets an error, so no client ever
//! receives a complete response with wrong bytes.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::oci::Digest;

/// Why a download failed (cloned to every reader).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DownloadError {
    /// The upstream call failed.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// The bytes did not hash to the digest, or the length was wrong.
    #[error("{0}")]
    Corrupt(String),
    /// Writing the cache failed.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Where a download stands.
#[derive(Debug, Clone)]
pub enum DlState {
    /// Asking the upstream.
    Connecting,
    /// Bytes arriving; `durable` of them are in the file.
    Streaming {
        /// Total size, when the source announced it.
        size: Option<u64>,
        /// Bytes readable from the file.
        durable: u64,
        /// Whether a LAN peer is the source.
        peer: bool,
    },
    /// Every byte is in the file and the digest verified; storing follows.
    Verified {
        /// Total size.
        size: u64,
        /// Whether a LAN peer is the source.
        peer: bool,
    },
    /// Verified and stored.
    Done {
        /// Total size.
        size: u64,
    },
    /// Nothing was kept.
    Failed(DownloadError),
}

/// A download in flight.
pub struct Download {
    /// What is being fetched.
    pub digest: Digest,
    state: watch::Receiver<DlState>,
    file: OnceLock<Arc<File>>,
}

impl Download {
    /// The current state, and a receiver to wait for the next.
    pub fn watch(&self) -> watch::Receiver<DlState> {
        self.state.clone()
    }

    /// Called by the download task once the temp file exists.
    pub fn set_file(&self, f: File) {
        let _ = self.file.set(Arc::new(f));
    }
}

/// Downloads in flight by (repository, digest). Keyed by repository too: a
/// client may only join a download its own repository's upstream answered, so
/// a private upstream repository never leaks through another name.
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<(String, Digest), Arc<Download>>>,
}

impl Inflight {
    /// Joins the download of `digest`, or registers a new one and returns its
    /// sender (the caller then spawns the task that feeds it).
    pub fn join_or_start(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> (Arc<Download>, Option<watch::Sender<DlState>>) {
        let Ok(mut map) = self.map.lock() else {
            // A poisoned map: run an unshared download rather than fail.
            let (tx, rx) = watch::channel(DlState::Connecting);
            let d = Arc::new(Download {
                digest: digest.clone(),
                state: rx,
                file: OnceLock::new(),
            });
            return (d, Some(tx));
        };
        let key = (repo.to_owned(), digest.clone());
        if let Some(d) = map.get(&key) {
            return (d.clone(), None);
        }
        let (tx, rx) = watch::channel(DlState::Connecting);
        let d = Arc::new(Download {
            digest: digest.clone(),
            state: rx,
            file: OnceLock::new(),
        });
        map.insert(key, d.clone());
        (d, Some(tx))
    }

    /// Forgets a finished download (new requests then find the blob stored).
    pub fn finish(&self, repo: &str, digest: &Digest) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&(repo.to_owned(), digest.clone()));
        }
    }

    /// Downloads in flight (a metric).
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is downloading.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes read per step by a reader.
const READ_CHUNK: u64 = 256 * 1024;

/// Streams bytes `start..end` of a download to a channel as they become
/// readable. The task ends when the receiver (the client) goes away.
pub fn reader(dl: Arc<Download>, start: u64, end: u64) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut state = dl.watch();
        let mut pos = start;
        while pos < end {
            let current = state.borrow_and_update().clone();
            let readable = match &current {
                DlState::Connecting => 0,
                // Hold the last byte back until the digest has verified.
                DlState::Streaming {
                    size: Some(s),
                    durable,
                    ..
                } => (*durable).min(s.saturating_sub(1)),
                DlState::Streaming { size: None, .. } => 0,
                DlState::Verified { size, .. } | DlState::Done { size } => *size,
                DlState::Failed(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let upto = readable.min(end);
            if upto > pos {
                let Some(file) = dl.file.get().cloned() else {
                    let _ = tx
                        .send(Err(std::io::Error::other("download file missing")))
                        .await;
                    return;
                };
                let len = (upto - pos).min(READ_CHUNK) as usize;
                let at = pos;
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, at).map(|_| Bytes::from(buf))
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
                pos += len as u64;
                continue;
            }
            if matches!(current, DlState::Done { .. } | DlState::Verified { .. }) {
                // Finished and nothing more to read in range.
                return;
            }
            if state.changed().await.is_err() {
                // The task is gone: only a finished download may still be read.
                if !matches!(
                    *state.borrow(),
                    DlState::Done { .. } | DlState::Verified { .. }
                ) {
                    let _ = tx
                        .send(Err(std::io::Error::other("download ended early")))
                        .await;
                    return;
                }
            }
        }
    });
    rx
}
