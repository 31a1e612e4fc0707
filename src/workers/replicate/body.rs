//! A request body that streams a stored blob to a replication target: one
//! bounded read at a time, the next started as soon as the last is handed on,
//! so the upload never holds more than two chunks in memory.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::store::BlobReader;
use crate::store::content::{Pending, READ_CHUNK};

/// The bytes of one blob, read in [`READ_CHUNK`] steps.
pub(super) struct ReaderBody {
    reader: BlobReader,
    size: u64,
    /// Where the next read starts.
    next: u64,
    pending: Option<Pending>,
}

impl ReaderBody {
    /// A body of the `size` bytes `reader` holds.
    pub(super) fn new(reader: BlobReader, size: u64) -> ReaderBody {
        let mut body = ReaderBody {
            reader,
            size,
            next: 0,
            pending: None,
        };
        body.start_next();
        body
    }

    fn start_next(&mut self) {
        if self.next < self.size {
            let len = (self.size - self.next).min(READ_CHUNK as u64) as usize;
            self.pending = Some(self.reader.read(self.next, len));
            self.next += len as u64;
        }
    }
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let read = ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        match read {
            Ok(bytes) => {
                self.start_next();
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}
