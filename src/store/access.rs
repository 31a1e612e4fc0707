//! Last-read times of content, for eviction's LRU order and gc's grace.
//!
//! Every read (blob GET, HEAD, mount, a manifest PUT naming a blob, an upload
//! finishing) touches its digest in memory, and a manifest lookup touches the
//! image's whole closure; nothing is written per request. [`Store::flush_access`] writes the map to the `access`
//! table in one transaction (a worker calls it every few seconds, and
//! [`Store::close`] once more at shutdown). The map holds only what was touched
//! since the last flush, and a flush drops entries for digests without a
//! `blobs` row, so it stays bounded. Whoever reads a last-touch time takes the
//! later of memory and table.

use std::collections::HashMap;
use std::sync::Mutex;

use redb::ReadableTable;

use super::{Store, StoreError, tables, unix_now};
use crate::oci::Digest;

/// Touches since the last flush: digest → unix seconds. Shared (an `Arc`) so
/// write jobs can read it.
#[derive(Default)]
pub(super) struct AccessMap {
    mem: Mutex<HashMap<String, u64>>,
}

impl AccessMap {
    /// Records a read of `digest` now.
    pub(super) fn touch(&self, digest: &str) {
        self.touch_all([digest]);
    }

    /// Records a read of each of `digests` now.
    pub(super) fn touch_all<'a>(&self, digests: impl IntoIterator<Item = &'a str>) {
        let now = unix_now();
        if let Ok(mut m) = self.mem.lock() {
            for d in digests {
                match m.get_mut(d) {
                    Some(t) => *t = (*t).max(now),
                    None => {
                        m.insert(d.to_owned(), now);
                    }
                }
            }
        }
    }

    /// The last touch of `digest` held in memory.
    pub(super) fn get(&self, digest: &str) -> Option<u64> {
        self.mem.lock().ok()?.get(digest).copied()
    }

    /// A copy of the map, for a flush or a pass's snapshot.
    pub(super) fn snapshot(&self) -> HashMap<String, u64> {
        self.mem.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Forgets the entries `flushed` wrote (unless touched again since).
    fn forget(&self, flushed: &HashMap<String, u64>) {
        if let Ok(mut m) = self.mem.lock() {
            for (d, t) in flushed {
                if m.get(d) == Some(t) {
                    m.remove(d);
                }
            }
        }
    }

    /// Entries in memory.
    pub(super) fn len(&self) -> usize {
        self.mem.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Writes `touched` into the `access` table (keeping the later time), for
/// digests that still have a `blobs` row; rows of digests without one go.
/// Returns how many were written.
pub(super) fn write_access(
    txn: &redb::WriteTransaction,
    touched: &HashMap<String, u64>,
) -> Result<usize, StoreError> {
    let blobs = txn.open_table(tables::BLOBS)?;
    let mut access = txn.open_table(tables::ACCESS)?;
    let mut n = 0;
    for (d, t) in touched {
        if blobs.get(d.as_str())?.is_none() {
            access.remove(d.as_str())?;
            continue;
        }
        let old = access.get(d.as_str())?.map(|v| v.value()).unwrap_or(0);
        if *t > old {
            access.insert(d.as_str(), *t)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The later of the flushed and the in-memory last touch of `digest`.
pub(super) fn last_touch(
    mem: &AccessMap,
    table: &impl ReadableTable<&'static str, u64>,
    digest: &str,
) -> Result<Option<u64>, StoreError> {
    let flushed = table.get(digest)?.map(|v| v.value());
    Ok(match (flushed, mem.get(digest)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    })
}

impl Store {
    /// The touch map, for a write job to carry.
    pub(super) fn access_handle(&self) -> std::sync::Arc<AccessMap> {
        self.access.clone()
    }

    /// Records a read of `digest` now (in memory; see the module doc).
    pub fn touch(&self, digest: &Digest) {
        self.access.touch(&digest.to_string());
    }

    /// Records a read of each of `digests` now (one lock for all of them).
    pub(super) fn touch_all<'a>(&self, digests: impl IntoIterator<Item = &'a str>) {
        self.access.touch_all(digests);
    }

    /// Writes the last-read times gathered in memory to the index in one
    /// transaction; returns how many rows changed.
    pub async fn flush_access(&self) -> Result<usize, StoreError> {
        let snapshot = self.access.snapshot();
        if snapshot.is_empty() {
            return Ok(0);
        }
        let snap = std::sync::Arc::new(snapshot);
        let s = snap.clone();
        let n = self.meta.write(move |txn| write_access(txn, &s)).await?;
        self.access.forget(&snap);
        Ok(n)
    }

    /// Last-read times waiting in memory for the next flush.
    pub fn unflushed_touches(&self) -> usize {
        self.access.len()
    }
}
