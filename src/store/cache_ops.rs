//! Mirrored (cached) content: manifests fetched from an upstream are stored
//! without the reference checks pushes get (their blobs arrive only when asked
//! for), marked `cached` for eviction, and tags remember when they were last
//! confirmed upstream.

use bytes::Bytes;
use redb::ReadableTable;

use super::manifest_cache::CachedTag;
use super::manifest_rows::ManifestRows;
use super::meta::{TagRecord, decode, encode};
use super::{Store, StoreError, manifest_cache, tables, unix_now};
use crate::oci::{Digest, ManifestView, RepoName, Tag};

impl Store {
    /// The cached state of `tag` in `repo`, if any; from memory while the
    /// index is unchanged since it was read (`manifest_cache.rs`).
    pub async fn cached_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<CachedTag>, StoreError> {
        let key = manifest_cache::key(repo.as_str(), tag.as_str());
        // Loaded before the read transaction starts: see `Meta::generation`.
        let generation = self.meta.generation();
        if let Some(hit) = self.manifest_cache.tag(&key, generation) {
            return Ok(Some(hit));
        }
        let (r, t) = (repo.to_string(), tag.to_string());
        let found = self
            .meta
            .read(move |txn| {
                let Some(v) = txn
                    .open_table(tables::TAGS)?
                    .get((r.as_str(), t.as_str()))?
                else {
                    return Ok(None);
                };
                let rec: TagRecord = decode(v.value())?;
                let present = txn
                    .open_table(tables::MANIFESTS)?
                    .get((r.as_str(), rec.digest.as_str()))?
                    .is_some();
                let digest = rec.digest.parse().map_err(|_| {
                    StoreError::Corrupt(format!("bad digest {:?} in index", rec.digest))
                })?;
                Ok(Some(CachedTag {
                    digest,
                    checked: rec.checked.unwrap_or(rec.updated),
                    manifest_present: present,
                }))
            })
            .await?;
        if let Some(t) = &found {
            self.manifest_cache.keep_tag(&key, generation, t.clone());
        }
        Ok(found)
    }

    /// Points `tag` at `digest` (already stored in `repo`) and marks it confirmed now.
    pub async fn confirm_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let (r, t, d) = (repo.to_string(), tag.to_string(), digest.to_string());
        self.meta
            .write(move |txn| {
                let now = unix_now();
                let mut tags = txn.open_table(tables::TAGS)?;
                let updated = match tags.get((r.as_str(), t.as_str()))? {
                    Some(v) => {
                        let old: TagRecord = decode(v.value())?;
                        if old.digest == d { old.updated } else { now }
                    }
                    None => now,
                };
                let rec = encode(&TagRecord {
                    digest: d.clone(),
                    updated,
                    checked: Some(now),
                })?;
                tags.insert((r.as_str(), t.as_str()), rec.as_slice())?;
                Ok(())
            })
            .await
    }

    /// Whether `repo` has the manifest `digest`.
    pub async fn has_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        let (r, d) = (repo.to_string(), digest.to_string());
        self.meta
            .read(move |txn| {
                Ok(txn
                    .open_table(tables::MANIFESTS)?
                    .get((r.as_str(), d.as_str()))?
                    .is_some())
            })
            .await
    }

    /// Stores a manifest fetched from `upstream` into the mirrored `repo`, and
    /// points `tag` at it when given. The bytes were verified against `digest`.
    pub async fn put_cached_manifest(
        &self,
        repo: &RepoName,
        tag: Option<&Tag>,
        digest: &Digest,
        media_type: &str,
        body: Bytes,
        upstream: &str,
    ) -> Result<(), StoreError> {
        let ct = media_type.to_owned();
        let b = body.clone();
        let view = tokio::task::spawn_blocking(move || ManifestView::parse(&b, &ct))
            .await?
            .map_err(|e| StoreError::ManifestInvalid(format!("upstream manifest: {e}")))?;
        let size = body.len() as u64;
        let rows = ManifestRows::new(repo, digest, size, &view, tag, Some(upstream))?;
        let hold = self.commits.hold(digest).await?;
        let mut writer = self.lazy_writer()?;
        writer.write(body).await?;
        writer.commit(Some(digest)).await?;
        let changes = self.changes_handle();
        let recorded = self
            .meta
            .write(move |txn| {
                changes.note(rows.named().iter().map(String::as_str));
                rows.insert(txn)
            })
            .await;
        if recorded.is_err() {
            hold.discard(self.meta.clone(), self.files.clone()).await;
        }
        self.cache_delta(recorded?);
        self.mark_mirrored(repo);
        Ok(())
    }
}
