//! [`BlobReader`]: the one way to read content, stored or still staged.
//!
//! A reader hands out positioned reads that start at once and run off the
//! runtime ([`Pending`]), so a body can keep one chunk ahead of the client
//! and a follower of a download can read a staged file while it grows. It
//! carries guards along ([`BlobReader::keep_alive`]): whatever must stay held
//! while someone reads (a "this digest is being read" count) lives exactly as
//! long as the reader.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::task::JoinHandle;

/// What a backend reads from: bytes at a position.
pub trait ReadAt: Send + Sync + 'static {
    /// Starts reading exactly `len` bytes at `at` (an error when fewer are
    /// there) and returns without waiting for them.
    fn read_at(&self, at: u64, len: usize) -> Pending;
}

/// A read that has started; await it for its bytes.
pub struct Pending(JoinHandle<std::io::Result<Bytes>>);

impl Pending {
    /// A read done by blocking code on a blocking thread (file reads).
    pub fn blocking(f: impl FnOnce() -> std::io::Result<Bytes> + Send + 'static) -> Pending {
        Pending(tokio::task::spawn_blocking(f))
    }

    /// A read done by async code on its own task (network reads).
    pub fn spawn(f: impl Future<Output = std::io::Result<Bytes>> + Send + 'static) -> Pending {
        Pending(tokio::spawn(f))
    }
}

impl Future for Pending {
    type Output = std::io::Result<Bytes>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.0).poll(cx)) {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        })
    }
}

/// Opaque read access to one blob's bytes (stored, or staged and growing).
pub struct BlobReader {
    source: Arc<dyn ReadAt>,
    /// Set when the backend can hand the bytes to a socket without copying.
    zero_copy: Option<super::ZeroCopy>,
    /// Held as long as the reader lives; see [`BlobReader::keep_alive`].
    guards: Vec<Box<dyn Send + Sync>>,
}

impl BlobReader {
    /// A reader over `source` (backends build these).
    pub fn new(source: impl ReadAt) -> BlobReader {
        BlobReader {
            source: Arc::new(source),
            zero_copy: None,
            guards: Vec::new(),
        }
    }

    /// Offers zero-copy sends of the same bytes (stored content in local
    /// files; backends build these).
    pub(super) fn with_zero_copy(mut self, zero_copy: super::ZeroCopy) -> BlobReader {
        self.zero_copy = Some(zero_copy);
        self
    }

    /// How to send these bytes to a socket without copying them, where the
    /// backend can (stored content in local files); `None` means read them.
    pub fn zero_copy(&self) -> Option<&super::ZeroCopy> {
        self.zero_copy.as_ref()
    }

    /// Starts reading exactly `len` bytes at `at`; see [`ReadAt::read_at`].
    /// Callers read in bounded steps ([`super::READ_CHUNK`]).
    pub fn read(&self, at: u64, len: usize) -> Pending {
        self.source.read_at(at, len)
    }

    /// Attaches `guard`, dropped with the reader: a response body holds its
    /// reader to the end, so a guard taken when the blob was opened (a
    /// per-digest reader count, say) says "being read" exactly as long.
    pub fn keep_alive(mut self, guard: impl Send + Sync + 'static) -> BlobReader {
        self.guards.push(Box::new(guard));
        self
    }
}

/// Bytes `[start, end)` of a blob in [`super::READ_CHUNK`] steps, the next
/// read started as soon as the last is handed on: what every body that
/// streams content (a response, an upload to a replication target) polls,
/// so a blob is never held whole and the disk stays one chunk ahead.
pub struct Chunks {
    reader: BlobReader,
    next: u64,
    end: u64,
    delivered: u64,
    total: u64,
    inflight: Option<Pending>,
}

impl Chunks {
    /// Bytes `start..end` of `reader`'s blob.
    pub fn new(reader: BlobReader, start: u64, end: u64) -> Chunks {
        let mut c = Chunks {
            reader,
            next: start,
            end,
            delivered: 0,
            total: end.saturating_sub(start),
            inflight: None,
        };
        c.start_read();
        c
    }

    fn start_read(&mut self) {
        if self.next >= self.end || self.inflight.is_some() {
            return;
        }
        let len = (self.end - self.next).min(super::READ_CHUNK as u64) as usize;
        self.inflight = Some(self.reader.read(self.next, len));
        self.next += len as u64;
    }

    /// The next chunk; `None` after the last.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let Some(h) = self.inflight.as_mut() else {
            return Poll::Ready(None);
        };
        let r = ready!(Pin::new(h).poll(cx));
        self.inflight = None;
        Poll::Ready(Some(r.inspect(|bytes| {
            self.delivered += bytes.len() as u64;
            self.start_read();
        })))
    }

    /// Whether every chunk has been handed on.
    pub fn is_end(&self) -> bool {
        self.inflight.is_none() && self.next >= self.end
    }

    /// Bytes not handed on yet.
    pub fn remaining(&self) -> u64 {
        self.total - self.delivered
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("guards", &self.guards.len())
            .field("zero_copy", &self.zero_copy.is_some())
            .finish_non_exhaustive()
    }
}
