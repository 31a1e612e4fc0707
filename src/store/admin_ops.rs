//! Summaries for the admin API: disk usage and repositories.

use redb::ReadableTable;
use serde::Serialize;

use super::meta::{BlobRecord, Origin, RepoRecord, decode};
use super::{Store, StoreError, tables};

/// Disk usage by origin.
#[derive(Debug, Default, Serialize)]
pub struct Usage {
    /// Content files.
    pub blobs: u64,
    /// Bytes in all content files.
    pub bytes: u64,
    /// Bytes pushed by users.
    pub pushed_bytes: u64,
    /// Bytes mirrored from upstreams (the eviction budget's share).
    pub cached_bytes: u64,
}

/// One repository.
#[derive(Debug, Serialize)]
pub struct RepoSummary {
    /// Name.
    pub name: String,
    /// pushed or cached.
    pub origin: Origin,
    /// Number of tags.
    pub tags: u64,
    /// Number of manifests.
    pub manifests: u64,
}

impl Store {
    /// Totals over every content file.
    pub async fn usage(&self) -> Result<Usage, StoreError> {
        self.meta
            .read(|txn| {
                let mut u = Usage::default();
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    let (_, v) = item?;
                    let rec: BlobRecord = decode(v.value())?;
                    u.blobs += 1;
                    u.bytes += rec.size;
                    match rec.origin {
                        Origin::Pushed => u.pushed_bytes += rec.size,
                        Origin::Cached => u.cached_bytes += rec.size,
                    }
                }
                Ok(u)
            })
            .await
    }

    /// Every repository with its tag and manifest counts.
    pub async fn repo_summaries(&self) -> Result<Vec<RepoSummary>, StoreError> {
        self.meta
            .read(|txn| {
                let tags = txn.open_table(tables::TAGS)?;
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let mut out = Vec::new();
                for item in txn.open_table(tables::REPOS)?.iter()? {
                    let (k, v) = item?;
                    let name = k.value().to_owned();
                    let rec: RepoRecord = decode(v.value())?;
                    let count =
                        |t: &redb::ReadOnlyTable<(&str, &str), &[u8]>| -> Result<u64, StoreError> {
                            let mut n = 0;
                            for i in t.range((name.as_str(), "")..)? {
                                if i?.0.value().0 != name {
                                    break;
                                }
                                n += 1;
                            }
                            Ok(n)
                        };
                    out.push(RepoSummary {
                        tags: count(&tags)?,
                        manifests: count(&manifests)?,
                        name,
                        origin: rec.origin,
                    });
                }
                Ok(out)
            })
            .await
    }
}
