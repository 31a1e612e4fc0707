//! Live sets: `nodes/<id>/live`, every digest one node's index holds (and
//! what it is reading or committing), so the node sweeping the bucket never
//! deletes what another node serves.
//!
//! Text, one line per digest (64 hex characters), after a header line
//! `wharf-live-set 1 node=<id> mark=<m>`: `mark` is the latest sweep request
//! (see `lease.rs`) the node had seen when it took the snapshot, which is
//! how a sweep knows a set is fresh enough to trust for its cutoff. A set is
//! written in 64 KiB chunks and read back as a stream; digests in memory
//! are 32 raw bytes each.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use object_store::{GetOptions, GetRange, ObjectStoreExt as _, PutPayload};

use super::{Bucket, failed};
use crate::store::StoreError;

/// A digest as the sweep holds it: the raw SHA-256.
pub type Raw = [u8; 32];

/// Chunks a set is written in.
const CHUNK: usize = 64 * 1024;
/// The header is never longer than this.
const MAX_HEADER: u64 = 512;
/// The first word of a set.
const MAGIC: &str = "wharf-live-set 1";

/// The key of `node`'s set.
pub fn key_of(node: &str) -> String {
    format!("nodes/{node}/live")
}

/// 64 hex characters as raw bytes; `None` for anything else.
pub fn raw_of(hex: &str) -> Option<Raw> {
    super::hex32(hex.strip_prefix("sha256:").unwrap_or(hex))
}

/// A set being written: digests appended as lines, in chunks.
pub struct SetWriter {
    chunks: Vec<Bytes>,
    buf: BytesMut,
    count: usize,
}

impl SetWriter {
    /// A set of `node`, answering `mark` (0: none seen yet).
    pub fn new(node: &str, mark: u64) -> SetWriter {
        let mut buf = BytesMut::with_capacity(CHUNK);
        buf.extend_from_slice(format!("{MAGIC} node={node} mark={mark}\n").as_bytes());
        SetWriter {
            chunks: Vec::new(),
            buf,
            count: 0,
        }
    }

    /// Adds a digest (`sha256:<hex>` or bare hex; anything else is skipped:
    /// the bucket holds only sha256 objects).
    pub fn push(&mut self, digest: &str) {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if hex.len() != 64 {
            return;
        }
        self.buf.extend_from_slice(hex.as_bytes());
        self.buf.extend_from_slice(b"\n");
        self.count += 1;
        if self.buf.len() >= CHUNK {
            let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK));
            self.chunks.push(full.freeze());
        }
    }

    /// Digests added.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none were added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The body to upload.
    fn finish(mut self) -> PutPayload {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.freeze());
        }
        self.chunks.into_iter().collect()
    }
}

/// Writes this node's set.
pub async fn publish(bucket: &Bucket, set: SetWriter) -> Result<(), StoreError> {
    bucket
        .objects()
        .put(&bucket.key(&key_of(bucket.node_id())), set.finish())
        .await
        .map_err(|e| failed("write live set", e))?;
    Ok(())
}

/// Every published set: the node and the mark its set answers (0 for none,
/// or for a header that does not parse).
pub async fn marks(bucket: &Bucket) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    for rel in bucket.list_all("nodes/").await? {
        let Some(node) = rel
            .strip_prefix("nodes/")
            .and_then(|r| r.strip_suffix("/live"))
        else {
            continue;
        };
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..MAX_HEADER)),
            ..Default::default()
        };
        let head = match bucket.objects().get_opts(&bucket.key(&rel), opts).await {
            Ok(g) => g.bytes().await.map_err(|e| failed("read live set", e))?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(failed("read live set", e)),
        };
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        let mark = std::str::from_utf8(line)
            .ok()
            .filter(|l| l.starts_with(MAGIC))
            .and_then(|l| l.split(' ').find_map(|w| w.strip_prefix("mark=")))
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        out.push((node.to_owned(), mark));
    }
    Ok(out)
}

/// The longest line of a set worth keeping while its end is awaited: a
/// digest line is 65 bytes, the header under [`MAX_HEADER`].
const MAX_LINE: usize = MAX_HEADER as usize;

/// Splits a streamed set into lines, holding at most [`MAX_LINE`] bytes of
/// an unfinished one: a longer line is not a digest and is skipped, so an
/// object without newlines (planted, or not a set) never fills memory.
#[derive(Default)]
struct Lines {
    rest: Vec<u8>,
    overlong: bool,
}

impl Lines {
    /// Hands `each` every line `chunk` completes.
    fn push(&mut self, chunk: &[u8], each: &mut impl FnMut(&[u8])) {
        let mut start = 0;
        while let Some(end) = chunk[start..].iter().position(|b| *b == b'\n') {
            let piece = &chunk[start..start + end];
            if !self.overlong {
                if self.rest.is_empty() {
                    each(piece);
                } else {
                    self.rest.extend_from_slice(piece);
                    each(&self.rest);
                }
            }
            self.rest.clear();
            self.overlong = false;
            start += end + 1;
        }
        let tail = &chunk[start..];
        if !self.overlong {
            if self.rest.len() + tail.len() > MAX_LINE {
                self.rest.clear();
                self.overlong = true;
            } else {
                self.rest.extend_from_slice(tail);
            }
        }
    }

    /// Hands `each` the last line, if it had no newline.
    fn finish(self, each: &mut impl FnMut(&[u8])) {
        if !self.overlong && !self.rest.is_empty() {
            each(&self.rest);
        }
    }
}

/// Adds every digest of `node`'s set to `into`, streaming the object.
/// Returns how many lines it held; 0 when the set is gone.
pub async fn read_into(
    bucket: &Bucket,
    node: &str,
    into: &mut HashSet<Raw>,
) -> Result<u64, StoreError> {
    let got = match bucket.objects().get(&bucket.key(&key_of(node))).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(failed("read live set", e)),
    };
    let mut stream = got.into_stream();
    let mut lines = 0u64;
    let mut split = Lines::default();
    let mut take = |line: &[u8]| {
        if let Some(raw) = std::str::from_utf8(line).ok().and_then(raw_of) {
            into.insert(raw);
            lines += 1;
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| failed("read live set", e))?;
        split.push(&chunk, &mut take);
    }
    split.finish(&mut take);
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_without_newlines_is_never_held_whole() {
        let mut split = Lines::default();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut each = |l: &[u8]| got.push(l.to_vec());
        let junk = vec![b'a'; 1 << 20];
        for _ in 0..8 {
            split.push(&junk, &mut each);
            assert!(split.rest.len() <= MAX_LINE, "{}", split.rest.len());
        }
        let hex = "01".repeat(32);
        split.push(format!("tail\n{}", &hex[..10]).as_bytes(), &mut each);
        split.push(format!("{}\n{hex}", &hex[10..]).as_bytes(), &mut each);
        split.finish(&mut each);
        assert_eq!(got, vec![hex.as_bytes().to_vec(), hex.as_bytes().to_vec()]);
    }

    #[test]
    fn raw_of_takes_hex_with_or_without_the_algorithm() {
        let hex = "ab".repeat(32);
        assert_eq!(raw_of(&hex), Some([0xab; 32]));
        assert_eq!(raw_of(&format!("sha256:{hex}")), Some([0xab; 32]));
        assert_eq!(raw_of("abc"), None);
        assert_eq!(raw_of(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_set_is_a_header_and_one_line_per_digest() {
        let mut w = SetWriter::new("n1", 7);
        w.push(&format!("sha256:{}", "01".repeat(32)));
        w.push("not a digest");
        assert_eq!(w.len(), 1);
        let body: Vec<u8> = w.finish().iter().flat_map(|b| b.iter().copied()).collect();
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            format!("wharf-live-set 1 node=n1 mark=7\n{}\n", "01".repeat(32))
        );
    }
}
