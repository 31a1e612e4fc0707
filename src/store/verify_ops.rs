//! Verify: re-hash stored content, and quarantine what no longer matches its
//! digest. The rows of a corrupt digest go first, in one transaction (so it is
//! never served again), then the content goes to quarantine through the
//! content seam (for files, `<root>/quarantine/sha256/<hex>`, kept for
//! inspection outside `blobs/`). A cached digest then comes back
//! from its upstream on the next pull; for a pushed one the outcome names
//! every repository and `repo:tag` it breaks.

use std::collections::{HashMap, HashSet};

use redb::ReadableTable;
use serde::Serialize;

use super::content::Pace;
use super::meta::{BlobRecord, Origin, RefsRecord, TagRecord, decode};
use super::sweep::{remove_manifest_rows, remove_rows_only};
use super::{Store, StoreError, tables};
use crate::oci::Digest;

/// One stored digest, as listed for a verify pass.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in the index.
    pub size: u64,
    /// Pushed or cached.
    pub origin: Origin,
}

/// What re-hashing one digest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rehash {
    /// The bytes match the digest and the size.
    Good,
    /// They do not (or the file is missing while a row names it): why.
    Corrupt(String),
    /// No row names it any more (collected or evicted meanwhile).
    Gone,
}

/// A quarantined digest, for the verify report.
#[derive(Debug, Clone, Serialize)]
pub struct Corrupt {
    /// The digest.
    pub digest: String,
    /// Its size in the index.
    pub size: u64,
    /// pushed or cached.
    pub origin: Origin,
    /// Repositories that linked it or hold a manifest needing it.
    pub repositories: Vec<String>,
    /// `repo:tag` of every tag whose image needs it.
    pub tags: Vec<String>,
    /// What was done, and what to do.
    pub action: String,
}

impl Store {
    /// Every content row, for a verify pass.
    pub async fn stored_blobs(&self) -> Result<Vec<StoredBlob>, StoreError> {
        self.meta
            .read(|txn| {
                let mut out = Vec::new();
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    let (k, v) = item?;
                    let rec: BlobRecord = decode(v.value())?;
                    let digest = k.value().parse().map_err(|_| {
                        StoreError::Corrupt(format!("bad digest {:?} in index", k.value()))
                    })?;
                    out.push(StoredBlob {
                        digest,
                        size: rec.size,
                        origin: rec.origin,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// Re-hashes the stored bytes of `blob` (streaming, at the pace of `pace`).
    /// The digest counts as in use meanwhile, so gc and eviction leave it be;
    /// content found missing is looked for once more when a row still names
    /// it (a pass that removed it and a push that stored it again may both
    /// have happened since the list was taken).
    pub async fn rehash(&self, blob: &StoredBlob, pace: &mut Pace) -> Result<Rehash, StoreError> {
        let _in_use = self.hold_in_use(&blob.digest);
        let hashed = match self.files.hash(&blob.digest, pace).await {
            Ok(h) => h,
            Err(StoreError::BlobUnknown(_)) => {
                if !self.has_blob_row(&blob.digest).await? {
                    return Ok(Rehash::Gone);
                }
                match self.files.hash(&blob.digest, pace).await {
                    Ok(h) => h,
                    Err(StoreError::BlobUnknown(_)) => {
                        return Ok(Rehash::Corrupt("the content is missing".into()));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if hashed.digest != blob.digest {
            return Ok(Rehash::Corrupt(format!(
                "the bytes hash to {}",
                hashed.digest
            )));
        }
        if hashed.size != blob.size {
            return Ok(Rehash::Corrupt(format!(
                "the content has {} bytes, the index says {}",
                hashed.size, blob.size
            )));
        }
        Ok(Rehash::Good)
    }

    async fn has_blob_row(&self, digest: &Digest) -> Result<bool, StoreError> {
        let d = digest.to_string();
        self.meta
            .read(move |txn| Ok(txn.open_table(tables::BLOBS)?.get(d.as_str())?.is_some()))
            .await
    }

    /// Quarantines `digest`: removes its rows (content, links, access, and as
    /// a manifest its manifest rows and the tags pointing at it) in one
    /// transaction, then moves its file under `quarantine/`. None when no row
    /// names it any more.
    pub async fn quarantine(
        &self,
        digest: &Digest,
        why: &str,
    ) -> Result<Option<Corrupt>, StoreError> {
        let d = digest.to_string();
        let found = self
            .meta
            .write(move |txn| {
                let rec: BlobRecord = match txn.open_table(tables::BLOBS)?.get(d.as_str())? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(None),
                };
                let (repositories, tags, holders, linked) = breakage(txn, &d)?;
                for r in &holders {
                    remove_manifest_rows(txn, r, &d)?;
                }
                remove_rows_only(txn, &d, &linked)?;
                Ok(Some((rec, repositories, tags)))
            })
            .await?;
        let Some((rec, repositories, tags)) = found else {
            return Ok(None);
        };
        if rec.origin == Origin::Cached {
            self.cache_delta(-(rec.size as i64));
        }
        let moved = {
            let _exclusive = self.commits.exclusive().await;
            // Stored again since the rows went: that commit put verified bytes
            // at the path (publishing replaces), which are someone's now.
            if self.commits.in_flight(digest) || self.has_blob_row(digest).await? {
                Ok(None)
            } else {
                self.files.quarantine(digest).await
            }
        };
        let action = match (&moved, rec.origin) {
            (Err(e), _) => {
                format!("rows removed (never served again); the file could not be moved: {e}")
            }
            (Ok(None), _) => "rows removed (never served again); the file was already gone".into(),
            (Ok(Some(p)), Origin::Cached) => {
                format!("quarantined to {p}; fetched again from the upstream on the next pull")
            }
            (Ok(Some(p)), Origin::Pushed) => {
                format!("quarantined to {p}; push the images that need it again")
            }
        };
        tracing::error!(%digest, reason = why, origin = ?rec.origin, ?repositories, ?tags, "corrupt content quarantined");
        Ok(Some(Corrupt {
            digest: digest.to_string(),
            size: rec.size,
            origin: rec.origin,
            repositories,
            tags,
            action,
        }))
    }
}

/// Who needs `digest`: (repositories, `repo:tag`s, repositories holding it as
/// a manifest, repositories linking it). Scans whole tables: verify finds
/// corruption rarely.
type Breakage = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn breakage(txn: &redb::WriteTransaction, digest: &str) -> Result<Breakage, StoreError> {
    let mut linked = Vec::new();
    for item in txn.open_table(tables::REPO_BLOBS)?.iter()? {
        let (k, _) = item?;
        let (r, d) = k.value();
        if d == digest {
            linked.push(r.to_owned());
        }
    }
    let mut holders = Vec::new();
    for item in txn.open_table(tables::MANIFESTS)?.iter()? {
        let (k, _) = item?;
        let (r, d) = k.value();
        if d == digest {
            holders.push(r.to_owned());
        }
    }
    // Manifests needing it, then the indexes needing those, per repository.
    let mut refs: HashMap<(String, String), RefsRecord> = HashMap::new();
    for item in txn.open_table(tables::MANIFEST_REFS)?.iter()? {
        let (k, v) = item?;
        let (r, m) = k.value();
        refs.insert((r.to_owned(), m.to_owned()), decode(v.value())?);
    }
    let mut broken: HashSet<(String, String)> = holders
        .iter()
        .map(|r| (r.clone(), digest.to_owned()))
        .collect();
    for ((r, m), rec) in &refs {
        if rec.blobs.iter().any(|b| b == digest) {
            broken.insert((r.clone(), m.clone()));
        }
    }
    loop {
        let more: Vec<(String, String)> = refs
            .iter()
            .filter(|(key, rec)| {
                !broken.contains(*key)
                    && rec
                        .manifests
                        .iter()
                        .any(|c| broken.contains(&(key.0.clone(), c.clone())))
            })
            .map(|(key, _)| key.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        broken.extend(more);
    }
    let mut tags = Vec::new();
    for item in txn.open_table(tables::TAGS)?.iter()? {
        let (k, v) = item?;
        let (r, t) = k.value();
        let rec: TagRecord = decode(v.value())?;
        if broken.contains(&(r.to_owned(), rec.digest)) {
            tags.push(format!("{r}:{t}"));
        }
    }
    let mut repositories: Vec<String> = linked
        .iter()
        .cloned()
        .chain(broken.into_iter().map(|(r, _)| r))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    repositories.sort();
    tags.sort();
    Ok((repositories, tags, holders, linked))
}
