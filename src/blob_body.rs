//! The HTTP body of a stored blob's bytes, one bounded chunk at a time
//! ([`Chunks`]): what a blob response sends and what a replication upload
//! streams to its target, so neither holds a blob whole. It sits beside the
//! layers because both the HTTP surface and the workers need it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::store::BlobReader;
use crate::store::content::Chunks;

/// Streams bytes `[start, end)` of a stored blob, reading the next chunk
/// while the current one is sent. Holds its reader (and whatever guards ride
/// on it) until the body is dropped.
pub struct ReaderBody(Chunks);

impl ReaderBody {
    /// A body for bytes `start..end` of `reader`'s blob.
    pub fn new(reader: BlobReader, start: u64, end: u64) -> ReaderBody {
        ReaderBody(Chunks::new(reader, start, end))
    }
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_next(cx).map(|c| c.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.remaining())
    }
}
