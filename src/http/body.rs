//! Response bodies: small in-memory ones, and files streamed in bounded chunks
//! (read on blocking threads, one chunk ahead) so a blob is never held whole.

use std::fs::File;
use std::future::Future as _;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use tokio::task::JoinHandle;

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

/// Bytes read per blocking hop.
const CHUNK: usize = 256 * 1024;

/// Streams `[offset, end)` of a file.
pub struct FileBody {
    file: Arc<File>,
    next: u64,
    end: u64,
    delivered: u64,
    total: u64,
    inflight: Option<JoinHandle<std::io::Result<Bytes>>>,
}

impl FileBody {
    /// A body for bytes `start..end` of `file`.
    pub fn new(file: File, start: u64, end: u64) -> FileBody {
        let mut b = FileBody {
            file: Arc::new(file),
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
        let len = (self.end - self.next).min(CHUNK as u64) as usize;
        let (file, at) = (self.file.clone(), self.next);
        self.next += len as u64;
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, at)?;
            Ok(Bytes::from(buf))
        }));
    }
}

impl http_body::Body for FileBody {
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
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(e) => return Poll::Ready(Some(Err(std::io::Error::other(e.to_string())))),
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
