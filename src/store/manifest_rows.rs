//! The index rows of one stored manifest (content row, manifest row, tag,
//! referrer, repository), shared by pushes and by the mirror's cache fills,
//! which differ only in origin and in when a tag was last confirmed upstream.

use redb::ReadableTable;

use super::meta::{BlobRecord, ManifestRecord, Origin, RefsRecord, RepoRecord, TagRecord, encode};
use super::{StoreError, tables, unix_now};
use crate::oci::{Descriptor, Digest, ManifestView, RepoName, Tag};

/// Rows encoded before the write job, so the job only inserts.
pub(super) struct ManifestRows {
    repo: String,
    digest: String,
    size: u64,
    record: Vec<u8>,
    /// The encoded [`RefsRecord`], written with the manifest row.
    refs: Vec<u8>,
    /// The manifest's digest and every digest it names (for gc's change log).
    named: Vec<String>,
    tag: Option<String>,
    referrer: Option<(String, Vec<u8>)>,
    origin: Origin,
    upstream: Option<String>,
}

impl ManifestRows {
    /// Rows for `view` stored as `digest` in `repo`; `upstream` names the source
    /// of cached content.
    pub(super) fn new(
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        view: &ManifestView,
        tag: Option<&Tag>,
        upstream: Option<&str>,
    ) -> Result<ManifestRows, StoreError> {
        let record = encode(&ManifestRecord {
            media_type: view.media_type.clone(),
            size,
            subject: view.subject.as_ref().map(|s| s.digest.to_string()),
            artifact_type: view.artifact_type.clone(),
        })?;
        let refs_record = RefsRecord::of(view);
        let refs = encode(&refs_record)?;
        let mut named = vec![digest.to_string()];
        named.extend(refs_record.blobs);
        named.extend(refs_record.manifests);
        let referrer = match &view.subject {
            Some(subject) => Some((
                subject.digest.to_string(),
                encode(&Descriptor {
                    media_type: view.media_type.clone(),
                    digest: digest.clone(),
                    size,
                    artifact_type: view.artifact_type.clone(),
                    annotations: view.annotations.clone(),
                    platform: None,
                    urls: None,
                })?,
            )),
            None => None,
        };
        Ok(ManifestRows {
            repo: repo.to_string(),
            digest: digest.to_string(),
            size,
            record,
            refs,
            named,
            tag: tag.map(|t| t.to_string()),
            referrer,
            origin: if upstream.is_some() {
                Origin::Cached
            } else {
                Origin::Pushed
            },
            upstream: upstream.map(str::to_owned),
        })
    }

    /// The manifest's digest and every digest it names.
    pub(super) fn named(&self) -> &[String] {
        &self.named
    }

    /// Refuses with [`StoreError::TagTaken`] when the tag these rows would
    /// write names another manifest already (in the same transaction as
    /// the insert, so nothing can land between the check and the write).
    pub(super) fn check_tag_free(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let Some(t) = &self.tag else {
            return Ok(());
        };
        let tags = txn.open_table(tables::TAGS)?;
        let Some(v) = tags.get((self.repo.as_str(), t.as_str()))? else {
            return Ok(());
        };
        let current = super::meta::decode::<TagRecord>(v.value())?.digest;
        if current == self.digest {
            return Ok(());
        }
        Err(StoreError::TagTaken {
            tag: format!("{}:{t}", self.repo),
            digest: current,
        })
    }

    /// Inserts the rows (an existing content row keeps its age, and its origin
    /// unless the repository is hosted: then the content is pushed). Returns
    /// the change of cached bytes.
    pub(super) fn insert(&self, txn: &redb::WriteTransaction) -> Result<i64, StoreError> {
        let (r, d) = (self.repo.as_str(), self.digest.as_str());
        let now = unix_now();
        let mut delta = 0i64;
        {
            let mut blobs = txn.open_table(tables::BLOBS)?;
            if blobs.get(d)?.is_none() {
                if self.origin == Origin::Cached {
                    delta += self.size as i64;
                }
                let rec = encode(&BlobRecord {
                    size: self.size,
                    created: now,
                    origin: self.origin,
                    pinned: false,
                })?;
                blobs.insert(d, rec.as_slice())?;
            }
        }
        txn.open_table(tables::MANIFESTS)?
            .insert((r, d), self.record.as_slice())?;
        txn.open_table(tables::MANIFEST_REFS)?
            .insert((r, d), self.refs.as_slice())?;
        if let Some(t) = &self.tag {
            let rec = encode(&TagRecord {
                digest: self.digest.clone(),
                updated: now,
                // A mirrored tag was just confirmed upstream.
                checked: (self.origin == Origin::Cached).then_some(now),
            })?;
            txn.open_table(tables::TAGS)?
                .insert((r, t.as_str()), rec.as_slice())?;
        }
        if let Some((subject, desc)) = &self.referrer {
            txn.open_table(tables::REFERRERS)?
                .insert((r, subject.as_str(), d), desc.as_slice())?;
        }
        let mut repos = txn.open_table(tables::REPOS)?;
        if repos.get(r)?.is_none() {
            let rec = encode(&RepoRecord {
                origin: self.origin,
                upstream: self.upstream.clone(),
            })?;
            repos.insert(r, rec.as_slice())?;
        }
        drop(repos);
        Ok(delta + super::labels::label_linked(txn, r, d)?)
    }
}
