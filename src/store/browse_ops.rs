//! Reads for browsing (the web page): a manifest's record and small content
//! linked in a repository, without counting as a pull. A pull touches the
//! image's last-read time (eviction's LRU order, "last pulled"); looking at
//! it on a page must not.

use bytes::Bytes;

use super::manifest_ops::{ManifestInfo, resolve};
use super::meta::{BlobRecord, ManifestRecord, decode};
use super::{Store, StoreError, tables};
use crate::oci::{Digest, Reference, RepoName};

impl Store {
    /// The manifest `reference` names in `repo`, if stored there; no access
    /// time is touched.
    pub async fn peek_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestInfo>, StoreError> {
        let (r, reference) = (repo.to_string(), reference.clone());
        self.meta
            .read(move |txn| {
                let Some(d) = resolve(txn, &r, &reference)? else {
                    return Ok(None);
                };
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let Some(rec) = manifests.get((r.as_str(), d.as_str()))? else {
                    return Ok(None);
                };
                let rec: ManifestRecord = decode(rec.value())?;
                let digest = d
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad digest {d:?} in index")))?;
                Ok(Some(ManifestInfo {
                    digest,
                    media_type: rec.media_type,
                    size: rec.size,
                }))
            })
            .await
    }

    /// A blob linked in `repo` (an image config), whole, if it is stored and
    /// at most `limit` bytes; `None` otherwise. No access time is touched.
    pub async fn peek_small_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        let (r, d) = (repo.to_string(), digest.to_string());
        let size = self
            .meta
            .read(move |txn| {
                let links = txn.open_table(tables::REPO_BLOBS)?;
                if links.get((r.as_str(), d.as_str()))?.is_none() {
                    return Ok(None);
                }
                Ok(match txn.open_table(tables::BLOBS)?.get(d.as_str())? {
                    Some(v) => Some(decode::<BlobRecord>(v.value())?.size),
                    None => None,
                })
            })
            .await?;
        let Some(size) = size.filter(|s| *s <= limit) else {
            return Ok(None);
        };
        let _reading = self.hold_in_use(digest);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.files.read_small(digest, size, limit).await
    }
}
