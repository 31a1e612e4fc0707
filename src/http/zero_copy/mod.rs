//! Zero-copy blob responses on plain-TCP HTTP/1 connections.
//!
//! hyper writes a response body from the `Bytes` its frames carry; it has no
//! way to say "these bytes are at offset X of that file". This module adds one
//! without forking hyper: a body ([`SpanBody`]) yields *placeholder* frames
//! whose memory lies in one reserved region, and records for each the file
//! span it stands for in the connection's [`Spans`]. The connection's IO
//! ([`ZeroCopyStream`]) recognises a placeholder slice by its address when
//! hyper writes it and sends the file span with `sendfile(2)` instead, so the
//! bytes on the wire are the file's and never pass through user space.
//!
//! What keeps it sound:
//! - hyper must pass body buffers to the IO as they are (its vectored "queue"
//!   write strategy, which the server sets explicitly); it never reads them;
//! - a response with a placeholder body has an exact `Content-Length`, so
//!   HTTP/1 sends body bytes verbatim (no chunk framing);
//! - only HTTP/1 responses on connections served by a [`ZeroCopyStream`] use
//!   it: TLS connections and HTTP/2 (which copies and frames data) never get a
//!   [`Spans`] handle, and their bodies stream from reads as before;
//! - each placeholder gets its own address range (spans are handed out round
//!   the region), and the IO looks spans up by address: a placeholder it does
//!   not know fails the connection (the client sees a short body, never wrong
//!   bytes).
//!
//! The placeholder region is allocated zeroed and never touched, so it costs
//! address space, not memory.

mod body;
mod stream;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

pub use body::SpanBody;
pub use stream::ZeroCopyStream;

use crate::store::content::ZeroCopy;

/// The most bytes one placeholder stands for: one `sendfile` run between two
/// polls of the body, and the readahead window.
pub const SPAN_MAX: usize = 2 << 20;

/// Placeholder address space: 32 spans of [`SPAN_MAX`], far more than hyper
/// queues on one connection (it stops polling a body once about 400 KiB are
/// queued), so a live span's range is never handed out again while it waits.
const REGION_LEN: usize = 32 * SPAN_MAX;

/// Spans remembered per connection; older ones were dropped unsent (hyper
/// queues at most 16 buffers) and are forgotten.
const SPANS_KEPT: usize = 16;

/// The reserved placeholder region (zeroed by the allocator, never written).
fn region() -> &'static [u8] {
    static REGION: OnceLock<&'static [u8]> = OnceLock::new();
    REGION.get_or_init(|| Box::leak(vec![0u8; REGION_LEN].into_boxed_slice()))
}

/// Whether `slice` lies in the placeholder region (cheap: two compares).
fn is_placeholder(slice: &[u8]) -> bool {
    let start = region().as_ptr() as usize;
    let ptr = slice.as_ptr() as usize;
    !slice.is_empty() && ptr >= start && ptr < start + REGION_LEN
}

/// One placeholder: `len` bytes at `at` of `source`, standing at `base` in the region.
struct Span {
    base: usize,
    len: usize,
    source: ZeroCopy,
    at: u64,
}

#[derive(Default)]
struct Queue {
    spans: VecDeque<Span>,
    /// Where the next placeholder starts in the region.
    next: usize,
}

/// The spans a connection's placeholders stand for, shared by the bodies
/// that record them and the [`ZeroCopyStream`] that sends them. A handle is
/// put in each HTTP/1 request's extensions by the server.
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Queue>>);

impl std::fmt::Debug for Spans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spans").finish_non_exhaustive()
    }
}

/// A placeholder slice's span, resolved for sending: `len` bytes at `at`.
struct Resolved {
    source: ZeroCopy,
    at: u64,
    /// The placeholder bytes left to send (the slice's length).
    len: usize,
}

impl Spans {
    /// Records that `len` (≤ [`SPAN_MAX`]) bytes at `at` of `source` are to be
    /// sent, returning the placeholder that stands for them.
    fn push(&self, source: ZeroCopy, at: u64, len: usize) -> bytes::Bytes {
        let len = len.min(SPAN_MAX);
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.next + len > REGION_LEN {
            q.next = 0;
        }
        let base = q.next;
        q.next += len;
        // A remembered span overlapping this range was never sent (its
        // address range came round again): forget it, as the oldest beyond
        // the bound.
        q.spans
            .retain(|s| s.base + s.len <= base || base + len <= s.base);
        while q.spans.len() >= SPANS_KEPT {
            q.spans.pop_front();
        }
        q.spans.push_back(Span {
            base,
            len,
            source,
            at,
        });
        bytes::Bytes::from_static(&region()[base..base + len])
    }

    /// The span a slice about to be written stands for, or `None` when the
    /// slice is not a placeholder. A placeholder with no recorded span, or
    /// one that runs past it, is an error.
    fn resolve(&self, slice: &[u8]) -> Option<std::io::Result<Resolved>> {
        if !is_placeholder(slice) {
            return None;
        }
        let off = slice.as_ptr() as usize - region().as_ptr() as usize;
        let q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let found = q
            .spans
            .iter()
            .find(|s| s.base <= off && off + slice.len() <= s.base + s.len);
        Some(match found {
            Some(s) => Ok(Resolved {
                source: s.source.clone(),
                at: s.at + (off - s.base) as u64,
                len: slice.len(),
            }),
            None => Err(std::io::Error::other(
                "zero-copy placeholder without a recorded span",
            )),
        })
    }

    /// Forgets the span that ends at region offset `end` (fully sent).
    fn sent_through(&self, slice_end: usize) {
        let start = region().as_ptr() as usize;
        let end = slice_end - start;
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        q.spans.retain(|s| s.base + s.len != end);
    }
}
