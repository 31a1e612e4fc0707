//! Removing content, shared by gc, eviction and verify: rows first, files
//! after the commit, crash-safe.
//!
//! The transaction that removes a digest's rows also writes it to the
//! `sweeping` table. After the commit the files go, each under the commit
//! gate held exclusively and only when no row names the digest again, no
//! commit of it is in flight (a concurrent upload of the same bytes) and
//! nobody reads it; then its `sweeping` row is cleared. A crash in between
//! leaves `sweeping` rows, and start-up removes their files (when still
//! unnamed) before reconciliation would move them to `lost+found/`. A file
//! kept because a reader held it stays listed and a later pass retries.

use std::collections::{HashMap, HashSet};

use redb::ReadableTable;

use super::meta::{BlobRecord, ManifestRecord, Origin, TagRecord, decode};
use super::{Content, Meta, Store, StoreError, tables, unix_now};
use crate::oci::Digest;

/// Files removed per exclusive hold of the commit gate (one call of the
/// content seam's batch removal).
const FILE_BATCH: usize = 256;

/// Files removed per call of the batch removal at start-up (nothing else
/// runs then; the bound only keeps one call's list reasonable).
const START_BATCH: usize = 4096;

/// What one digest's removed rows were.
#[derive(Debug, Clone)]
pub(super) struct Removed {
    /// The digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its origin.
    pub origin: Origin,
}

/// Removes the content row of `digest`, its access row and its links in
/// `linked` repositories, and lists it in `sweeping`. Returns what went (None:
/// no row).
pub(super) fn remove_blob_rows(
    txn: &redb::WriteTransaction,
    digest: &str,
    linked: &[String],
) -> Result<Option<Removed>, StoreError> {
    let removed = remove_rows_only(txn, digest, linked)?;
    if removed.is_some() {
        txn.open_table(tables::SWEEPING)?
            .insert(digest, unix_now())?;
    }
    Ok(removed)
}

/// [`remove_blob_rows`] without listing the digest in `sweeping` (its file
/// is moved elsewhere, not removed).
pub(super) fn remove_rows_only(
    txn: &redb::WriteTransaction,
    digest: &str,
    linked: &[String],
) -> Result<Option<Removed>, StoreError> {
    let rec = {
        let mut blobs = txn.open_table(tables::BLOBS)?;
        let old = blobs.remove(digest)?;
        match old {
            Some(v) => decode::<BlobRecord>(v.value())?,
            None => return Ok(None),
        }
    };
    txn.open_table(tables::ACCESS)?.remove(digest)?;
    let mut links = txn.open_table(tables::REPO_BLOBS)?;
    for r in linked {
        links.remove((r.as_str(), digest))?;
    }
    Ok(Some(Removed {
        digest: digest.to_owned(),
        size: rec.size,
        origin: rec.origin,
    }))
}

/// Removes the manifest row of `digest` in `repo`, its references, its
/// referrers entry and the tags of `repo` that point at it. Returns whether
/// there was a manifest row.
pub(super) fn remove_manifest_rows(
    txn: &redb::WriteTransaction,
    repo: &str,
    digest: &str,
) -> Result<bool, StoreError> {
    let removed = remove_manifest_only(txn, repo, digest)?;
    if removed {
        remove_tags_naming(txn, repo, &HashSet::from([digest.to_owned()]))?;
    }
    Ok(removed)
}

/// [`remove_manifest_rows`] without the tags: for a pass removing many
/// manifests of one repository, which then drops their tags in one scan with
/// [`remove_tags_naming`] instead of one scan per manifest.
pub(super) fn remove_manifest_only(
    txn: &redb::WriteTransaction,
    repo: &str,
    digest: &str,
) -> Result<bool, StoreError> {
    let rec = {
        let mut manifests = txn.open_table(tables::MANIFESTS)?;
        let old = manifests.remove((repo, digest))?;
        match old {
            Some(v) => decode::<ManifestRecord>(v.value())?,
            None => return Ok(false),
        }
    };
    txn.open_table(tables::MANIFEST_REFS)?
        .remove((repo, digest))?;
    if let Some(s) = rec.subject {
        txn.open_table(tables::REFERRERS)?
            .remove((repo, s.as_str(), digest))?;
    }
    Ok(true)
}

/// Removes the tags of `repo` that point at any of `digests` (one scan of
/// the repository's tags).
pub(super) fn remove_tags_naming(
    txn: &redb::WriteTransaction,
    repo: &str,
    digests: &HashSet<String>,
) -> Result<(), StoreError> {
    let mut tags = txn.open_table(tables::TAGS)?;
    let mut doomed = Vec::new();
    for item in tags.range((repo, "")..)? {
        let (k, v) = item?;
        let (kr, kt) = k.value();
        if kr != repo {
            break;
        }
        if digests.contains(&decode::<TagRecord>(v.value())?.digest) {
            doomed.push(kt.to_owned());
        }
    }
    for t in doomed {
        tags.remove((repo, t.as_str()))?;
    }
    Ok(())
}

/// Every repository linking each of `digests`, from one scan of `repo_blobs`.
pub(super) fn links_of(
    links: &impl ReadableTable<(&'static str, &'static str), ()>,
    digests: &std::collections::HashSet<String>,
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for item in links.iter()? {
        let (k, _) = item?;
        let (r, d) = k.value();
        if digests.contains(d) {
            out.entry(d.to_owned()).or_default().push(r.to_owned());
        }
    }
    Ok(out)
}

/// Start-up, before reconciliation: removes the files of `sweeping` digests
/// that no row names (a pass crashed between its commit and its file
/// removals) and clears the list. Nothing is done when `blobs/` is not there
/// (reconciliation then stops start-up).
pub(super) async fn finish_at_start(meta: &Meta, files: &Content) -> Result<(), StoreError> {
    let listed = meta
        .read(|txn| {
            let sweeping = txn.open_table(tables::SWEEPING)?;
            let blobs = txn.open_table(tables::BLOBS)?;
            let mut out = Vec::new();
            for item in sweeping.iter()? {
                let (k, _) = item?;
                let d = k.value().to_owned();
                let named = blobs.get(d.as_str())?.is_some();
                out.push((d, named));
            }
            Ok(out)
        })
        .await?;
    if listed.is_empty() || !files.prepare(false).await? {
        return Ok(());
    }
    let doomed: Vec<Digest> = listed
        .iter()
        .filter(|(_, named)| !named)
        .filter_map(|(d, _)| d.parse().ok())
        .collect();
    let removed = doomed.len();
    for chunk in doomed.chunks(START_BATCH) {
        files.remove_many(chunk.to_vec()).await?;
    }
    let all: Vec<String> = listed.into_iter().map(|(d, _)| d).collect();
    meta.write(move |txn| {
        let mut sweeping = txn.open_table(tables::SWEEPING)?;
        for d in &all {
            sweeping.remove(d.as_str())?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(
        files = removed,
        "start-up finished removals a gc or eviction pass left when the process stopped"
    );
    Ok(())
}

impl Store {
    /// Removes the files of `digests` whose rows a pass removed (see the
    /// module doc) and clears their `sweeping` rows; a file someone reads now
    /// stays listed for a later pass. Returns how many files went.
    pub(super) async fn remove_swept_files(
        &self,
        digests: Vec<String>,
    ) -> Result<usize, StoreError> {
        let mut removed = 0;
        for batch in digests.chunks(FILE_BATCH) {
            let batch: Vec<String> = batch.to_vec();
            let _exclusive = self.commits.exclusive().await;
            let b = batch.clone();
            let named = self
                .meta
                .read(move |txn| {
                    let blobs = txn.open_table(tables::BLOBS)?;
                    let mut named = Vec::new();
                    for d in &b {
                        named.push(blobs.get(d.as_str())?.is_some());
                    }
                    Ok(named)
                })
                .await?;
            let mut go = Vec::new();
            let mut settled = Vec::new();
            for (d, named) in batch.iter().zip(named) {
                let Ok(digest) = d.parse::<Digest>() else {
                    settled.push(d.clone());
                    continue;
                };
                if named || self.commits.in_flight(&digest) {
                    // Stored again meanwhile: the file is someone's now.
                    settled.push(d.clone());
                } else if !self.in_use.contains(d) {
                    go.push(digest);
                    settled.push(d.clone());
                }
            }
            removed += go.len();
            self.files.remove_many(go).await?;
            drop(_exclusive);
            self.meta
                .write(move |txn| {
                    let mut sweeping = txn.open_table(tables::SWEEPING)?;
                    for d in &settled {
                        sweeping.remove(d.as_str())?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(removed)
    }

    /// Retries file removals earlier passes left listed (a reader held the
    /// file then). Returns how many files went.
    pub(super) async fn finish_sweeps(&self) -> Result<usize, StoreError> {
        let listed = self
            .meta
            .read(|txn| {
                let mut out = Vec::new();
                for item in txn.open_table(tables::SWEEPING)?.iter()? {
                    out.push(item?.0.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        if listed.is_empty() {
            return Ok(0);
        }
        self.remove_swept_files(listed).await
    }
}
