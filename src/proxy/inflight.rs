//! One download per digest, whoever asks. The first request starts a download
//! task that is not tied to its connection; it writes `tmp/` while hashing and
//! publishes how many bytes have arrived. Every requester, first or later,
//! streams them as they arrive: from a window of the newest chunks kept in
//! memory (the same buffers the network delivered, shared, not copied), or from
//! the staged content (a [`BlobReader`]) once a reader has fallen behind that window. The last byte is
//! released only after the digest verified; on a mismatch every reader gets an
//! error, so no client ever receives a complete response with wrong bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::oci::Digest;
use crate::store::BlobReader;
use crate::store::content::READ_CHUNK;

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
    /// Bytes arriving.
    Streaming {
        /// Total size, when the source announced it.
        size: Option<u64>,
        /// Bytes arrived: readable from the window or, before it, the file.
        received: u64,
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
    /// The bytes written so far (the staged content, or the stored blob).
    content: OnceLock<BlobReader>,
    window: Mutex<Window>,
    /// The task found the blob stored already (an earlier download recorded
    /// it just after this request missed the store): nothing crossed the
    /// network, so the request is a hit.
    found_stored: std::sync::atomic::AtomicBool,
    /// A use of the digest, held while anyone holds the download (the task,
    /// its readers): eviction and gc leave it alone meanwhile.
    in_use: OnceLock<crate::store::in_use::InUseGuard>,
}

impl Download {
    /// Called by the download task when it starts.
    pub fn hold_in_use(&self, guard: crate::store::in_use::InUseGuard) {
        let _ = self.in_use.set(guard);
    }

    /// Called by the download task when the store had the blob after all.
    pub fn set_found_stored(&self) {
        self.found_stored
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the task served the blob from the store without fetching it.
    pub fn found_stored(&self) -> bool {
        self.found_stored.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The current state, and a receiver to wait for the next.
    pub fn watch(&self) -> watch::Receiver<DlState> {
        self.state.clone()
    }

    /// Called by the download task once its content is readable (staged
    /// and growing, or found stored).
    pub fn set_reader(&self, r: BlobReader) {
        let _ = self.content.set(r);
    }

    /// Called by the download task with each chunk as it arrives, before it
    /// announces the new length.
    pub fn arrived(&self, chunk: Bytes) {
        if let Ok(mut w) = self.window.lock() {
            w.push(chunk);
        }
    }

    /// Called by the download task when the file holds the first `written`
    /// bytes: chunks before that may leave memory.
    pub fn written(&self, written: u64) {
        if let Ok(mut w) = self.window.lock() {
            w.evict(written);
        }
    }

    fn locate(&self, pos: u64, upto: u64) -> Located {
        match self.window.lock() {
            Ok(w) => w.locate(pos, upto),
            Err(_) => Located::File(upto),
        }
    }

    fn new(digest: &Digest, state: watch::Receiver<DlState>) -> Arc<Download> {
        Arc::new(Download {
            digest: digest.clone(),
            state,
            content: OnceLock::new(),
            window: Mutex::new(Window::default()),
            found_stored: std::sync::atomic::AtomicBool::new(false),
            in_use: OnceLock::new(),
        })
    }
}

/// Where a reader finds the bytes at its position.
#[derive(Debug, PartialEq)]
enum Located {
    /// In memory: these bytes (up to the end of one chunk, or the limit).
    Memory(Bytes),
    /// In the file, which holds them up to this offset (exclusive): the
    /// start of the window when the reader fell behind it, since the bytes
    /// after it may not be written yet.
    File(u64),
}

/// Bytes of written chunks kept in memory (besides the unwritten ones) for
/// readers that keep up: more than one network read (hyper reads up to about
/// 400 KiB at a time), so a reader a read behind stays in memory; small
/// enough that a download holds at most 2.5 MiB (this, plus a step being
/// written and one gathering), for many downloads and a peak RSS under half
/// Distribution's.
const WINDOW_KEEP: usize = 512 << 10;

/// The newest chunks of a download, contiguous, in arrival order. Only chunks
/// the file already holds are dropped, so whatever is before the window can be
/// read from the file.
#[derive(Default)]
struct Window {
    /// Offset of the first chunk kept.
    start: u64,
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    len: usize,
}

impl Window {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn evict(&mut self, written: u64) {
        while let Some(front) = self.chunks.front() {
            // Keep everything not yet written, and WINDOW_KEEP bytes of what
            // is (counting the unwritten bytes towards it left a reader one
            // network read behind to the file each time a write step began).
            let next = self.start + front.len() as u64;
            if next > written || written - next < WINDOW_KEEP as u64 {
                break;
            }
            self.start += front.len() as u64;
            self.len -= front.len();
            self.chunks.pop_front();
        }
    }

    /// Where the bytes from `pos` (up to `upto`) are: the newest in memory,
    /// up to `upto` or the end of the chunk holding `pos`; anything before
    /// the window in the file, read no further than the window start (the
    /// file may not hold the bytes after it yet). Past the window (content
    /// found stored, no chunks at all) the file has everything.
    fn locate(&self, pos: u64, upto: u64) -> Located {
        if pos < self.start {
            return Located::File(upto.min(self.start));
        }
        let mut off = self.start;
        for c in &self.chunks {
            let end = off + c.len() as u64;
            if pos < end {
                let from = (pos - off) as usize;
                let to = (upto.min(end) - off) as usize;
                if to > from {
                    return Located::Memory(c.slice(from..to));
                }
                break;
            }
            off = end;
        }
        Located::File(upto)
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
    /// [`Publisher`] (the caller then hands it to the task that feeds it).
    pub fn join_or_start(
        self: &Arc<Self>,
        repo: &str,
        digest: &Digest,
    ) -> (Arc<Download>, Option<Publisher>) {
        let key = (repo.to_owned(), digest.clone());
        let (tx, rx) = watch::channel(DlState::Connecting);
        let d = Download::new(digest, rx);
        // A poisoned map: run an unshared download rather than fail.
        if let Ok(mut map) = self.map.lock() {
            if let Some(d) = map.get(&key) {
                return (d.clone(), None);
            }
            map.insert(key.clone(), d.clone());
        }
        let publisher = Publisher {
            inflight: self.clone(),
            key,
            download: d.clone(),
            tx,
        };
        (d, Some(publisher))
    }

    /// The download of `digest` for `repo`, if one is running.
    pub fn get(&self, repo: &str, digest: &Digest) -> Option<Arc<Download>> {
        let map = self.map.lock().ok()?;
        map.get(&(repo.to_owned(), digest.clone())).cloned()
    }

    /// Forgets a finished download (new requests then find the blob stored),
    /// unless the entry is already a newer download of the same digest.
    fn finish(&self, key: &(String, Digest), download: &Arc<Download>) {
        if let Ok(mut map) = self.map.lock() {
            if map.get(key).is_some_and(|d| Arc::ptr_eq(d, download)) {
                map.remove(key);
            }
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

/// The download task's hold on its registered download: it publishes the
/// states, and however the task ends, a panic included, dropping it forgets
/// the entry and, if no final state was published, fails the readers. So a
/// digest is never stuck behind a download that no task feeds.
pub struct Publisher {
    inflight: Arc<Inflight>,
    key: (String, Digest),
    download: Arc<Download>,
    tx: watch::Sender<DlState>,
}

impl Publisher {
    /// Where the task publishes intermediate states (`Streaming`, `Verified`).
    pub fn state(&self) -> &watch::Sender<DlState> {
        &self.tx
    }

    /// The end: forgets the entry, then publishes the final state (`Done` or
    /// `Failed`). Stored (or failed) first, then forgotten: a new request
    /// either joins this download or finds the blob in the store.
    pub fn settle(self, last: DlState) {
        self.inflight.finish(&self.key, &self.download);
        self.tx.send_replace(last);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.inflight.finish(&self.key, &self.download);
        let settled = matches!(*self.tx.borrow(), DlState::Done { .. } | DlState::Failed(_));
        if !settled {
            self.tx.send_replace(DlState::Failed(DownloadError::Corrupt(
                "the download ended without a result".into(),
            )));
        }
    }
}

/// Streams bytes `start..end` of a download to a channel as they become
/// readable: from memory while the reader keeps up, else from the file. The
/// task ends when the receiver (the client) goes away.
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
                    received,
                    ..
                } => (*received).min(s.saturating_sub(1)),
                DlState::Streaming { size: None, .. } => 0,
                DlState::Verified { size, .. } | DlState::Done { size } => *size,
                DlState::Failed(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let upto = readable.min(end);
            if upto > pos {
                let limit = match dl.locate(pos, upto) {
                    Located::Memory(chunk) => {
                        pos += chunk.len() as u64;
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Located::File(limit) => limit,
                };
                let Some(content) = dl.content.get() else {
                    let _ = tx
                        .send(Err(std::io::Error::other("download file missing")))
                        .await;
                    return;
                };
                let len = (limit - pos).min(READ_CHUNK as u64) as usize;
                let chunk = content.read(pos, len).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of_bytes(b"blob")
    }

    #[test]
    fn a_settled_download_is_forgotten_and_keeps_its_result() {
        let inflight = Arc::new(Inflight::default());
        let (dl, publisher) = inflight.join_or_start("r", &digest());
        let publisher = publisher.expect("first one starts");
        let (joined, none) = inflight.join_or_start("r", &digest());
        assert!(
            none.is_none() && Arc::ptr_eq(&dl, &joined),
            "second one joins"
        );
        publisher.settle(DlState::Done { size: 4 });
        assert!(inflight.is_empty());
        assert!(matches!(*dl.watch().borrow(), DlState::Done { size: 4 }));
    }

    #[test]
    fn a_panicking_download_task_fails_its_readers_and_frees_the_digest() {
        let inflight = Arc::new(Inflight::default());
        let (dl, publisher) = inflight.join_or_start("r", &digest());
        let publisher = publisher.expect("first one starts");
        let task = std::thread::spawn(move || {
            publisher.state().send_replace(DlState::Streaming {
                size: Some(4),
                received: 1,
                peer: false,
            });
            panic!("a bug in the download task");
        });
        assert!(task.join().is_err());
        assert!(inflight.is_empty(), "the entry went with the task");
        assert!(matches!(*dl.watch().borrow(), DlState::Failed(_)));
        let (_, again) = inflight.join_or_start("r", &digest());
        assert!(again.is_some(), "the next request starts a new download");
    }

    #[test]
    fn an_old_publisher_does_not_forget_a_newer_download() {
        let inflight = Arc::new(Inflight::default());
        let (_, old) = inflight.join_or_start("r", &digest());
        let old = old.expect("starts");
        // The entry is replaced (as after an earlier finish and a new start).
        inflight.finish(&old.key, &old.download);
        let (new_dl, new) = inflight.join_or_start("r", &digest());
        assert!(new.is_some());
        drop(old);
        let still = inflight.get("r", &digest()).expect("the new one stays");
        assert!(Arc::ptr_eq(&still, &new_dl));
    }

    fn window(chunks: &[&'static [u8]]) -> Window {
        let mut w = Window::default();
        for c in chunks {
            w.push(Bytes::from_static(c));
        }
        w
    }

    fn mem(b: &'static [u8]) -> Located {
        Located::Memory(Bytes::from_static(b))
    }

    #[test]
    fn slices_stop_at_chunk_ends_and_at_the_limit() {
        let w = window(&[b"abc", b"defg", b"h"]);
        assert_eq!(w.locate(0, 8), mem(b"abc"));
        assert_eq!(w.locate(4, 8), mem(b"efg"));
        assert_eq!(w.locate(4, 6), mem(b"ef"));
        assert_eq!(w.locate(7, 8), mem(b"h"));
        assert_eq!(
            w.locate(8, 9),
            Located::File(9),
            "past the window: stored content"
        );
    }

    #[test]
    fn only_written_chunks_leave_and_the_newest_stay() {
        let big: &'static [u8] = &[7u8; WINDOW_KEEP];
        let mut w = window(&[b"0123", big, b"tail"]);
        w.evict(0);
        assert_eq!(w.start, 0, "nothing written: everything stays");
        w.evict(4 + WINDOW_KEEP as u64 + 4);
        assert_eq!(
            w.start, 4,
            "the oldest chunk left, the window is back under its size"
        );
        assert_eq!(
            w.locate(0, 4),
            Located::File(4),
            "evicted bytes come from the file"
        );
        assert_eq!(w.locate(4, 5), mem(&[7u8]));
        assert_eq!(
            w.locate(4 + WINDOW_KEEP as u64, 100 + WINDOW_KEEP as u64),
            mem(b"tail")
        );
    }

    #[test]
    fn a_reader_behind_the_window_reads_the_file_only_up_to_the_window() {
        // The file may end anywhere past the window start: a read from the
        // file stops there, and the rest comes from memory.
        let big: &'static [u8] = &[7u8; WINDOW_KEEP];
        let mut w = window(&[b"0123", b"4567", big, b"tail"]);
        w.evict(8 + WINDOW_KEEP as u64 + 4);
        assert_eq!(w.start, 8);
        assert_eq!(w.locate(2, 1000), Located::File(8));
        assert_eq!(w.locate(8, 9), mem(&[7u8]));
    }

    #[test]
    fn unwritten_bytes_do_not_count_towards_what_stays() {
        // A write step has just begun on the newest MiB: the MiB written
        // before it stays in memory for readers a little behind.
        let big: &'static [u8] = &[7u8; WINDOW_KEEP];
        let mut w = window(&[b"0123", big, big]);
        w.evict(4 + WINDOW_KEEP as u64);
        assert_eq!(w.start, 4);
    }
}
