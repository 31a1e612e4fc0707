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

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("guards", &self.guards.len())
            .field("zero_copy", &self.zero_copy.is_some())
            .finish_non_exhaustive()
    }
}
