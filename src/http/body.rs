//! Response bodies: small in-memory ones, and stored blobs streamed in bounded
//! chunks (read off the runtime, one chunk ahead) so a blob is never held whole.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

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

pub use crate::blob_body::ReaderBody;

/// A stored blob's bytes as a response [`Body`].
pub fn blob(body: ReaderBody) -> Body {
    body.boxed_unsync()
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
