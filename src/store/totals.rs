//! What `/metrics` reports about stored content: files and bytes by origin
//! and the space left on the data directory's filesystem. Cached bytes are a
//! running total ([`Store::cached_bytes`]); the rest needs a walk of the
//! `blobs` table, so [`Store::origin_totals`] is for callers that pace it
//! (the scrape refreshes it in the background, never per request).

use super::content::DiskSpace;
use super::meta::{BlobRecord, decode};
use super::{Origin, Store, StoreError, tables};

/// Content files and bytes by origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginTotals {
    /// Content files pushed by users (or linked into a hosted repository).
    pub pushed_blobs: u64,
    /// Their bytes.
    pub pushed_bytes: u64,
    /// Content files mirrored from upstreams or peers (evictable).
    pub cached_blobs: u64,
    /// Their bytes.
    pub cached_bytes: u64,
}

impl Store {
    /// Files and bytes by origin: one read of the `blobs` table, off the
    /// runtime. Linear in the number of content files: pace the calls.
    pub async fn origin_totals(&self) -> Result<OriginTotals, StoreError> {
        self.meta
            .read(|txn| {
                use redb::ReadableTable;
                let mut t = OriginTotals::default();
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    let (_, v) = item?;
                    let rec: BlobRecord = decode(v.value())?;
                    match rec.origin {
                        Origin::Pushed => {
                            t.pushed_blobs += 1;
                            t.pushed_bytes += rec.size;
                        }
                        Origin::Cached => {
                            t.cached_blobs += 1;
                            t.cached_bytes += rec.size;
                        }
                    }
                }
                Ok(t)
            })
            .await
    }

    /// Free and total bytes of the data directory's filesystem.
    pub async fn disk_space(&self) -> Result<DiskSpace, StoreError> {
        self.files.disk_space().await
    }
}
