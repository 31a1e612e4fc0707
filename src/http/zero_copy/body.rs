//! [`SpanBody`]: a stored blob's bytes as placeholders for zero-copy sends.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;

use super::{SPAN_MAX, Spans};
use crate::http::Body;
use crate::store::BlobReader;
use crate::store::content::ZeroCopy;

/// How far ahead of what is sent the kernel is asked to read.
const PREFETCH: u64 = 4 * SPAN_MAX as u64;

/// Bytes `[start, end)` of a stored blob, yielded as placeholders that the
/// connection sends from the file. Holds its reader (and the guards riding on
/// it, such as "this digest is being read") until the body is dropped.
pub struct SpanBody {
    /// Kept for its guards; the bytes go by `zero_copy`.
    _reader: BlobReader,
    zero_copy: ZeroCopy,
    spans: Spans,
    next: u64,
    end: u64,
    /// Readahead has been asked for up to here.
    prefetched: u64,
    prefetch: Option<JoinHandle<()>>,
    /// The first span being brought into the page cache off the runtime:
    /// later spans ride on readahead, but a first send must not wait for
    /// the disk on a runtime thread (a client asking for ranges of cold
    /// blobs would stall everyone else).
    warming: Option<JoinHandle<std::io::Result<()>>>,
}

impl SpanBody {
    /// A body for bytes `start..end` of `reader`'s blob, or `None` when the
    /// reader's backend cannot send without copying.
    pub fn new(
        reader: BlobReader,
        spans: Spans,
        start: u64,
        end: u64,
    ) -> Result<SpanBody, BlobReader> {
        let Some(zero_copy) = reader.zero_copy().cloned() else {
            return Err(reader);
        };
        let first = (end.saturating_sub(start)).min(SPAN_MAX as u64) as usize;
        let warming = (first > 0).then(|| {
            let zero_copy = zero_copy.clone();
            tokio::task::spawn_blocking(move || zero_copy.warm(start, first, PREFETCH))
        });
        Ok(SpanBody {
            _reader: reader,
            zero_copy,
            spans,
            next: start,
            end,
            prefetched: (start + PREFETCH).min(end),
            prefetch: None,
            warming,
        })
    }

    /// Boxed as a response [`Body`].
    pub fn boxed(self) -> Body {
        self.boxed_unsync()
    }

    /// Keeps readahead between [`PREFETCH`] and twice that ahead of what is
    /// sent: one request per [`PREFETCH`] bytes, with at most one in flight
    /// (off the runtime: it may block while reads are queued).
    fn read_ahead(&mut self) {
        if self.prefetched >= self.end
            || self.prefetched >= self.next + PREFETCH
            || self.prefetch.as_ref().is_some_and(|h| !h.is_finished())
        {
            return;
        }
        let want = (self.next + 2 * PREFETCH).min(self.end);
        let (from, len) = (self.prefetched, want - self.prefetched);
        self.prefetched = want;
        let zero_copy = self.zero_copy.clone();
        self.prefetch = Some(tokio::task::spawn_blocking(move || {
            zero_copy.prefetch(from, len)
        }));
    }
}

impl http_body::Body for SpanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(w) = self.warming.as_mut() {
            let r = ready!(Pin::new(w).poll(cx));
            self.warming = None;
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
                Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(e.to_string())))),
            }
        }
        if self.next >= self.end {
            return Poll::Ready(None);
        }
        self.read_ahead();
        let len = (self.end - self.next).min(SPAN_MAX as u64) as usize;
        let placeholder = self.spans.push(self.zero_copy.clone(), self.next, len);
        self.next += len as u64;
        Poll::Ready(Some(Ok(Frame::data(placeholder))))
    }

    fn is_end_stream(&self) -> bool {
        self.warming.is_none() && self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.next)
    }
}
