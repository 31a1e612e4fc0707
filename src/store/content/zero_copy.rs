//! [`ZeroCopy`]: stored bytes a socket can take straight from the page cache.
//!
//! Serving a warm blob through user space copies every byte twice (file to
//! buffer, buffer to socket); `sendfile(2)` hands the socket references to
//! the cached pages instead, which is what lets one host serve layers at the
//! speed of its memory. A backend offers this for content it keeps in local
//! files, and only for stored (verified, immutable) content: a staged file
//! that is still growing is read the ordinary way. A backend without local
//! files (an object store) offers nothing and responses stream as before.

use std::fs::File;
use std::num::NonZeroU64;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// An open stored file whose bytes can be sent to a socket without copying.
#[derive(Clone)]
pub struct ZeroCopy(Arc<File>);

impl ZeroCopy {
    /// Offers `file` (stored, immutable content) for zero-copy sends.
    pub(super) fn new(file: Arc<File>) -> ZeroCopy {
        ZeroCopy(file)
    }

    /// Sends up to `len` bytes at `at` of the file to `socket`, returning
    /// how many went. On a non-blocking socket whose buffer is full this is
    /// `WouldBlock`; 0 means the file ends before `at` (a file shorter than
    /// its recorded size), which callers must treat as an error. Runs on the
    /// caller's thread: pages not in the page cache are read from disk first,
    /// so callers keep `len` bounded and [`ZeroCopy::prefetch`] ahead.
    pub fn send_to(&self, socket: BorrowedFd<'_>, at: u64, len: usize) -> std::io::Result<usize> {
        let mut offset = at;
        Ok(rustix::fs::sendfile(
            socket,
            &*self.0,
            Some(&mut offset),
            len,
        )?)
    }

    /// Makes sure `at..at + len` is in the page cache before a send of it
    /// runs on the runtime: asks for readahead of `ahead` bytes from `at`,
    /// then reads the range (into a small scratch buffer, discarded), which
    /// waits for the disk where the pages were not cached. Blocking: call it
    /// off the runtime. A file that ends before `at + len` is an error here,
    /// before any byte is sent.
    pub fn warm(&self, at: u64, len: usize, ahead: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.prefetch(at, ahead.max(len as u64));
        let mut scratch = vec![0u8; len.min(256 * 1024)];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(scratch.len());
            self.0.read_exact_at(&mut scratch[..n], at + done as u64)?;
            done += n;
        }
        Ok(())
    }

    /// Asks the kernel to start reading `at..at + len` into the page cache
    /// (readahead that does not wait for the reads). May block briefly while
    /// the reads are queued: call it off the runtime.
    pub fn prefetch(&self, at: u64, len: u64) {
        // Advice only: a failure costs speed, never correctness.
        let _ = rustix::fs::fadvise(
            &*self.0,
            at,
            NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
    }
}

impl std::fmt::Debug for ZeroCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroCopy").finish_non_exhaustive()
    }
}
