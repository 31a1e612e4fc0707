//! Response bodies: small in-memory ones, and stored blobs streamed in bounded
//! chunks (read off the runtime, one chunk ahead) so a blob is never held whole.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

use crate::store::BlobReader;
use crate::store::content::{Pending, READ_CHUNK};

/// The body type of every response.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body from bytes already in memory.
pub fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// Streams bytes `[start, end)` of a stored blob, reading the next chunk
/// while the current one is sent. Holds its reader (and whatever guards ride
/// on it) until the body is dropped.
pub struct ReaderBody {
    reader: BlobReader,
    next: u64,
    end: u64,
    delivered: u64,
    total: u64,
    inflight: Option<Pending>,
}

impl ReaderBody {
    /// A body for bytes `start..end` of `reader`'s blob.
    pub fn new(reader: BlobReader, start: u64, end: u64) -> ReaderBody {
        let mut b = ReaderBody {
            reader,
            next: start,
            end,
            delivered: 0,
            total: end.saturating_sub(start),
            inflight: None,
        };
        b.start_read();
        b
    }

    /// Boxed as a response [`Body`].
    pub fn boxed(self) -> Body {
        self.boxed_unsync()
    }

    fn start_read(&mut self) {
        if self.next >= self.end || self.inflight.is_some() {
            return;
        }
        let len = (self.end - self.next).min(READ_CHUNK as u64) as usize;
        self.inflight = Some(self.reader.read(self.next, len));
        self.next += len as u64;
    }
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let Some(h) = self.inflight.as_mut() else {
            return Poll::Ready(None);
        };
        let r = ready!(Pin::new(h).poll(cx));
        self.inflight = None;
        let bytes = match r {
            Ok(b) => b,
            Err(e) => return Poll::Ready(Some(Err(e))),
        };
        self.delivered += bytes.len() as u64;
        self.start_read();
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.inflight.is_none() && self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.delivered)
    }
}

/// A body fed by a channel (a blob arriving from an upstream). An error item
/// aborts the response short of its Content-Length, so a client never takes a
/// truncated or unverified body for a whole one.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl ChannelBody {
    /// A body of exactly `len` bytes from `rx`.
    pub fn new(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>, len: u64) -> ChannelBody {
        ChannelBody { rx, remaining: len }
    }

    /// Boxed as a response [`Body`].
    pub fn boxed(self) -> Body {
        BodyExt::boxed_unsync(self)
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(b)) => {
                self.remaining = self.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(Some(Err(std::io::Error::other("blob source ended early")))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
