//! Manifests, tags, referrers and the catalog.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use redb::ReadableTable;

use super::closure::RefTables;
use super::manifest_rows::ManifestRows;
use super::meta::{BlobRecord, ManifestRecord, TagRecord, decode};
use super::pin_ops::refuse_if_pinned;
use super::{Store, StoreError, manifest_cache, replication_ops, tables, unix_now};
use crate::oci::{
    Descriptor, Digest, ManifestView, Reference, RepoName, manifest::MAX_MANIFEST_BYTES,
};

/// What a GET or HEAD of a manifest needs before reading bytes.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    /// Content address.
    pub digest: Digest,
    /// Served as Content-Type.
    pub media_type: String,
    /// Bytes.
    pub size: u64,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The subject, echoed as `OCI-Subject`.
    pub subject: Option<Digest>,
}

/// One page of a sorted listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// The entries.
    pub items: Vec<String>,
    /// Whether more follow (then a `Link` header is due).
    pub more: bool,
}

/// Every blob and child manifest `view` names must be readable in `repo` with
/// the size its descriptor says. Generic over the table kind so a push checks
/// once in a read transaction before writing its file, and again inside the
/// write transaction that records it.
fn check_references(
    links: &impl ReadableTable<(&'static str, &'static str), ()>,
    manifests: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    blobs: &impl ReadableTable<&'static str, &'static [u8]>,
    repo: &str,
    view: &ManifestView,
) -> Result<(), StoreError> {
    let size_of = |d: &str| -> Result<Option<u64>, StoreError> {
        blobs
            .get(d)?
            .map(|v| decode::<BlobRecord>(v.value()).map(|r| r.size))
            .transpose()
    };
    for desc in view.blobs.iter().filter(|d| !d.is_foreign()) {
        let d = desc.digest.to_string();
        let linked = links.get((repo, d.as_str()))?.is_some()
            || manifests.get((repo, d.as_str()))?.is_some();
        let size = if linked { size_of(&d)? } else { None };
        check_size(desc, size)?;
    }
    for desc in &view.children {
        let d = desc.digest.to_string();
        let size = match manifests.get((repo, d.as_str()))? {
            // The content row too: a manifest row never outlives it, but a
            // push must not commit naming content that is gone either way.
            Some(v) if blobs.get(d.as_str())?.is_some() => {
                Some(decode::<ManifestRecord>(v.value())?.size)
            }
            _ => None,
        };
        check_size(desc, size)?;
    }
    Ok(())
}

/// [`check_references`] in a read transaction (before any file is written).
fn check_references_read(
    txn: &redb::ReadTransaction,
    repo: &str,
    view: &ManifestView,
) -> Result<(), StoreError> {
    check_references(
        &txn.open_table(tables::REPO_BLOBS)?,
        &txn.open_table(tables::MANIFESTS)?,
        &txn.open_table(tables::BLOBS)?,
        repo,
        view,
    )
}

/// [`check_references`] inside the write transaction that records the manifest.
fn check_references_write(
    txn: &redb::WriteTransaction,
    repo: &str,
    view: &ManifestView,
) -> Result<(), StoreError> {
    check_references(
        &txn.open_table(tables::REPO_BLOBS)?,
        &txn.open_table(tables::MANIFESTS)?,
        &txn.open_table(tables::BLOBS)?,
        repo,
        view,
    )
}

fn check_size(desc: &Descriptor, stored: Option<u64>) -> Result<(), StoreError> {
    match stored {
        None => Err(StoreError::ManifestBlobUnknown(desc.digest.clone())),
        Some(s) if s != desc.size => Err(StoreError::ManifestInvalid(format!(
            "descriptor of {} says {} bytes but the stored content has {s}",
            desc.digest, desc.size
        ))),
        Some(_) => Ok(()),
    }
}

pub(super) fn resolve(
    txn: &redb::ReadTransaction,
    repo: &str,
    reference: &Reference,
) -> Result<Option<String>, StoreError> {
    Ok(match reference {
        Reference::Digest(d) => Some(d.to_string()),
        Reference::Tag(t) => match txn.open_table(tables::TAGS)?.get((repo, t.as_str()))? {
            Some(v) => Some(decode::<TagRecord>(v.value())?.digest),
            None => None,
        },
    })
}

impl Store {
    /// Validates and stores a manifest pushed to `repo` under `reference`.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        body: Bytes,
        content_type: &str,
    ) -> Result<PutManifest, StoreError> {
        self.put_manifest_as(repo, reference, body, content_type, TagWrite::Move)
            .await
    }

    /// [`Store::put_manifest`] for a writer that must not move a tag someone
    /// else set (`wharf import`): when `reference` is a tag already naming
    /// another manifest, nothing is recorded and the answer is
    /// [`StoreError::TagTaken`], decided in the same transaction that would
    /// have written it, so a push landing meanwhile wins.
    pub async fn put_manifest_keeping_tag(
        &self,
        repo: &RepoName,
        reference: &Reference,
        body: Bytes,
        content_type: &str,
    ) -> Result<PutManifest, StoreError> {
        self.put_manifest_as(repo, reference, body, content_type, TagWrite::KeepOther)
            .await
    }

    async fn put_manifest_as(
        &self,
        repo: &RepoName,
        reference: &Reference,
        body: Bytes,
        content_type: &str,
        tag_write: TagWrite,
    ) -> Result<PutManifest, StoreError> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(StoreError::ManifestInvalid(
                "manifest is larger than 4 MiB".into(),
            ));
        }
        let ct = content_type.to_owned();
        let b = body.clone();
        let (view, digest) = tokio::task::spawn_blocking(move || {
            let view = ManifestView::parse(&b, &ct)
                .map_err(|e| StoreError::ManifestInvalid(e.to_string()));
            (view, Digest::of_bytes(&b))
        })
        .await?;
        let view = Arc::new(view?);
        if let Reference::Digest(expected) = reference {
            if *expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let size = body.len() as u64;
        // A manifest naming content the repository lacks is refused before its
        // file is written: rejected pushes leave nothing on disk. On a shared
        // bucket, what other nodes recorded counts (a client's blob uploads
        // may have gone through another node).
        let (r, v) = (repo.to_string(), view.clone());
        let checked = self
            .meta
            .read(move |txn| check_references_read(txn, &r, &v))
            .await;
        match checked {
            Err(StoreError::ManifestBlobUnknown(_)) if self.records().is_some() => {
                self.adopt_references(repo, &view).await?;
                let (r, v) = (repo.to_string(), view.clone());
                self.meta
                    .read(move |txn| check_references_read(txn, &r, &v))
                    .await?;
            }
            other => other?,
        }
        // Touched before the write job: a gc sweep that runs first finds them
        // young; one that runs after sees this manifest (and the write job
        // checks again that each is still there).
        for d in view.blobs.iter().chain(&view.children) {
            self.touch(&d.digest);
        }

        let subject = view.subject.as_ref().map(|s| s.digest.clone());
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let rows = ManifestRows::new(repo, &digest, size, &view, tag, None)?;
        // On a shared bucket the records go first: a node holding a row
        // always finds its record (a row without one is another node's
        // delete to follow).
        if tag_write != TagWrite::Adopted {
            self.publish_manifest(repo, &digest, body.clone(), &view, tag)
                .await?;
        }
        let hold = self.commits.hold(&digest).await?;
        let mut writer = self.lazy_writer()?;
        writer.write(body.clone()).await?;
        writer.commit(Some(&digest)).await?;
        let r = repo.to_string();
        let v = view.clone();
        let changes = self.changes_handle();
        let replica = self.replica.clone();
        let change = replication_ops::pushed(repo, reference);
        // Checked again where it counts: a blob may have been unlinked (or
        // collected) since. Replication is queued in the same transaction:
        // an acknowledged push is never missing from the queue.
        let recorded = self
            .meta
            .write(move |txn| {
                check_references_write(txn, &r, &v)?;
                if tag_write == TagWrite::KeepOther {
                    rows.check_tag_free(txn)?;
                }
                changes.note(rows.named().iter().map(String::as_str));
                let delta = rows.insert(txn)?;
                // What another node pushed is queued there, not again here.
                if tag_write != TagWrite::Adopted {
                    replica.enqueue(txn, &change)?;
                }
                Ok(delta)
            })
            .await;
        let delta = match recorded {
            Ok(delta) => delta,
            Err(e) => {
                hold.discard(self.meta.clone(), self.files.clone()).await;
                return Err(e);
            }
        };
        drop(hold);
        self.cache_delta(delta);
        self.mark_pushed(repo);
        self.replica.kick_if_queued();
        Ok(PutManifest { digest, subject })
    }

    /// Stores a manifest another node pushed, read from its record: checked
    /// as a push is, but neither queued for replication nor recorded again.
    pub(super) async fn store_recorded_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: Bytes,
        media_type: &str,
    ) -> Result<(), StoreError> {
        let reference = Reference::Digest(digest.clone());
        self.put_manifest_as(repo, &reference, body, media_type, TagWrite::Adopted)
            .await
            .map(|_| ())
    }

    /// Adopts what `view` names that other nodes recorded in `repo` (blobs
    /// pushed through them, platform manifests), before a push's check.
    async fn adopt_references(
        &self,
        repo: &RepoName,
        view: &ManifestView,
    ) -> Result<(), StoreError> {
        for child in &view.children {
            self.adopt_manifest(repo, &child.digest, 1).await?;
        }
        for blob in view.blobs.iter().filter(|d| !d.is_foreign()) {
            if self.blob_size(repo, &blob.digest).await?.is_none() {
                self.adopt_layer(repo, &blob.digest).await?;
            }
        }
        Ok(())
    }

    /// [`Store::manifest_info`] for a repository routed as hosted: on a
    /// shared bucket, a tag follows its record once this node's copy is
    /// [`TAG_TTL`](super::records_follow::TAG_TTL) old, and a digest this node
    /// lacks is read from its record (another node's push).
    pub async fn hosted_manifest_info(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestInfo, StoreError> {
        self.follow_records(repo, reference).await;
        match self.manifest_info(repo, reference).await {
            Err(StoreError::ManifestUnknown(m)) => match reference {
                Reference::Digest(d) if self.manifest_from_records(repo, d).await? => {
                    self.manifest_info(repo, reference).await
                }
                _ => Err(StoreError::ManifestUnknown(m)),
            },
            other => other,
        }
    }

    /// Looks up a manifest by tag or digest. A lookup is a use of the whole
    /// image: the manifest and everything it needs (an index's platform
    /// manifests, their configs and layers) count as read now, so eviction's
    /// LRU order is by image, not by which blobs a client happened to fetch
    /// (one with the layers already, like dockerd checking a tag, fetches none).
    /// A lookup answered since the index last changed is answered from memory
    /// (`manifest_cache.rs`), touching the closure at most once a second
    /// (last-read times are in seconds).
    pub async fn manifest_info(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestInfo, StoreError> {
        let key = manifest_cache::reference_key(repo.as_str(), reference);
        // Loaded before the read transaction starts: see `Meta::generation`.
        let generation = self.meta.generation();
        if let Some(hit) = self.manifest_cache.lookup(&key, generation) {
            if hit.touch_due(unix_now()) {
                self.touch_all(hit.closure.iter().map(String::as_str));
            }
            return Ok(hit.info.clone());
        }
        let r = repo.to_string();
        let reference = reference.clone();
        let (info, closure) = self
            .meta
            .read(move |txn| {
                let unknown = || StoreError::ManifestUnknown(reference.to_string());
                let d = resolve(txn, &r, &reference)?.ok_or_else(unknown)?;
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let rec = manifests
                    .get((r.as_str(), d.as_str()))?
                    .ok_or_else(unknown)?;
                let rec: ManifestRecord = decode(rec.value())?;
                let digest = d
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("bad digest {d:?} in index")))?;
                let refs = txn.open_table(tables::MANIFEST_REFS)?;
                let t = RefTables {
                    manifests: &manifests,
                    refs: &refs,
                };
                let mut closure = HashSet::new();
                t.close_over(&r, &d, &mut closure, &mut HashSet::new())?;
                let info = ManifestInfo {
                    digest,
                    media_type: rec.media_type,
                    size: rec.size,
                };
                Ok((info, closure))
            })
            .await?;
        self.touch_all(closure.iter().map(String::as_str));
        self.manifest_cache.keep_lookup(
            &key,
            generation,
            info.clone(),
            closure.into_iter().collect(),
            unix_now(),
        );
        Ok(info)
    }

    /// Reads stored manifest bytes (at most 4 MiB by construction). The
    /// content counts as in use while it is read, so a pass running meanwhile
    /// leaves it. Small manifests are kept in memory once read (and verified
    /// against their digest), so a hot one is not read again.
    pub async fn manifest_bytes(&self, info: &ManifestInfo) -> Result<Bytes, StoreError> {
        if let Some(bytes) = self.manifest_cache.bytes(&info.digest) {
            return Ok(bytes);
        }
        let read = {
            let _reading = self.hold_in_use(&info.digest);
            self.files
                .read_small(&info.digest, info.size, MAX_MANIFEST_BYTES)
                .await?
        };
        let bytes = read.ok_or_else(|| {
            tracing::error!(digest = %info.digest, "index names a manifest whose content is missing");
            StoreError::ManifestUnknown(info.digest.to_string())
        })?;
        if info.size <= manifest_cache::MAX_CACHED_MANIFEST {
            self.manifest_cache.keep_bytes(&info.digest, &bytes);
        }
        Ok(bytes)
    }

    /// Deletes a manifest (by digest: the manifest, its tags and its referrers
    /// entry) or a tag (by tag: only the tag). A pinned tag, or a manifest a
    /// pin needs, is refused with [`StoreError::Pinned`].
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), StoreError> {
        if self.records().is_some() {
            // What another node pushed is taken in first, so the delete finds
            // it here; its records go before this node's rows, so nothing
            // here takes it back in from them meanwhile.
            self.hosted_manifest_info(repo, reference).await?;
            let (r, checked) = (repo.to_string(), reference.clone());
            self.meta
                .write(move |txn| match &checked {
                    Reference::Tag(t) => refuse_if_pinned(txn, &r, Some(t.as_str()), None),
                    Reference::Digest(d) => refuse_if_pinned(txn, &r, None, Some(&d.to_string())),
                })
                .await?;
            self.unpublish(repo, reference).await?;
        }
        self.delete_manifest_rows(repo, reference, true).await
    }

    /// [`Store::delete_manifest`] in this node's index alone; `queue`:
    /// whether replication hears of it (not for another node's delete,
    /// queued there).
    pub(super) async fn delete_manifest_rows(
        &self,
        repo: &RepoName,
        reference: &Reference,
        queue: bool,
    ) -> Result<(), StoreError> {
        let r = repo.to_string();
        let reference = reference.clone();
        let replica = self.replica.clone();
        self.meta
            .write(move |txn| {
                let unknown = || StoreError::ManifestUnknown(reference.to_string());
                match &reference {
                    Reference::Tag(t) => refuse_if_pinned(txn, &r, Some(t.as_str()), None)?,
                    Reference::Digest(d) => refuse_if_pinned(txn, &r, None, Some(&d.to_string()))?,
                }
                let mut change = replication_ops::Change {
                    repo: r.clone(),
                    reference: reference.to_string(),
                    op: replication_ops::QueueOp::Delete,
                    digest: None,
                };
                match &reference {
                    Reference::Tag(t) => {
                        let removed = txn
                            .open_table(tables::TAGS)?
                            .remove((r.as_str(), t.as_str()))?
                            .map(|v| decode::<TagRecord>(v.value()))
                            .transpose()?;
                        let Some(old) = removed else {
                            return Err(unknown());
                        };
                        change.digest = Some(old.digest);
                        if queue {
                            replica.enqueue(txn, &change)?;
                        }
                        Ok(())
                    }
                    Reference::Digest(dg) => {
                        let d = dg.to_string();
                        let rec = {
                            let mut manifests = txn.open_table(tables::MANIFESTS)?;
                            let old = manifests.remove((r.as_str(), d.as_str()))?;
                            match old {
                                Some(v) => decode::<ManifestRecord>(v.value())?,
                                None => return Err(unknown()),
                            }
                        };
                        txn.open_table(tables::MANIFEST_REFS)?
                            .remove((r.as_str(), d.as_str()))?;
                        let mut tags = txn.open_table(tables::TAGS)?;
                        let mut doomed = Vec::new();
                        for item in tags.range((r.as_str(), "")..)? {
                            let (k, v) = item?;
                            let (kr, kt) = k.value();
                            if kr != r {
                                break;
                            }
                            if decode::<TagRecord>(v.value())?.digest == d {
                                doomed.push(kt.to_owned());
                            }
                        }
                        for t in doomed {
                            tags.remove((r.as_str(), t.as_str()))?;
                        }
                        if let Some(s) = rec.subject {
                            txn.open_table(tables::REFERRERS)?.remove((
                                r.as_str(),
                                s.as_str(),
                                d.as_str(),
                            ))?;
                        }
                        if queue {
                            replica.enqueue(txn, &change)?;
                        }
                        Ok(())
                    }
                }
            })
            .await?;
        self.replica.kick_if_queued();
        Ok(())
    }

    /// Tags of `repo` in lexical order after `last`, at most `n`.
    pub async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<String>,
    ) -> Result<Page, StoreError> {
        match self.recorded_tags(repo).await {
            Ok(Some(all)) if !all.is_empty() => return Ok(page_of(all, n, last)),
            // No tag anywhere: this node's index says whether the name exists.
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "could not list the repository's tag records in the bucket; listing this node's tags");
            }
        }
        let r = repo.to_string();
        let rn = repo.clone();
        self.meta
            .read(move |txn| {
                if txn.open_table(tables::REPOS)?.get(r.as_str())?.is_none() {
                    return Err(StoreError::NameUnknown(rn));
                }
                let tags = txn.open_table(tables::TAGS)?;
                let start = last.unwrap_or_default();
                let mut items = Vec::new();
                let limit = n.unwrap_or(usize::MAX);
                let mut more = false;
                for item in tags.range((r.as_str(), start.as_str())..)? {
                    let (k, _) = item?;
                    let (kr, kt) = k.value();
                    if kr != r {
                        break;
                    }
                    if kt == start {
                        continue;
                    }
                    if items.len() == limit {
                        more = true;
                        break;
                    }
                    items.push(kt.to_owned());
                }
                Ok(Page { items, more })
            })
            .await
    }

    /// Repository names in lexical order after `last` for which `visible` holds,
    /// at most `n`.
    pub async fn catalog<F>(
        &self,
        n: usize,
        last: Option<String>,
        visible: F,
    ) -> Result<Page, StoreError>
    where
        F: Fn(&str) -> bool + Send + 'static,
    {
        self.meta
            .read(move |txn| {
                let repos = txn.open_table(tables::REPOS)?;
                let start = last.unwrap_or_default();
                let mut items = Vec::new();
                let mut more = false;
                for item in repos.range(start.as_str()..)? {
                    let (k, _) = item?;
                    let name = k.value();
                    if name == start || !visible(name) {
                        continue;
                    }
                    if items.len() == n {
                        more = true;
                        break;
                    }
                    items.push(name.to_owned());
                }
                Ok(Page { items, more })
            })
            .await
    }

    /// Manifests in `repo` whose subject is `subject`, optionally only those of
    /// `artifact_type`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<String>,
    ) -> Result<Vec<Descriptor>, StoreError> {
        let (r, s) = (repo.to_string(), subject.to_string());
        self.meta
            .read(move |txn| {
                let table = txn.open_table(tables::REFERRERS)?;
                let mut out = Vec::new();
                for item in table.range((r.as_str(), s.as_str(), "")..)? {
                    let (k, v) = item?;
                    let (kr, ks, _) = k.value();
                    if kr != r || ks != s {
                        break;
                    }
                    let desc: Descriptor = decode(v.value())?;
                    if artifact_type
                        .as_deref()
                        .is_none_or(|a| desc.artifact_type.as_deref() == Some(a))
                    {
                        out.push(desc);
                    }
                }
                Ok(out)
            })
            .await
    }
}

/// One page of sorted `all` after `last`, at most `n`.
fn page_of(all: Vec<String>, n: Option<usize>, last: Option<String>) -> Page {
    let start = last.unwrap_or_default();
    let limit = n.unwrap_or(usize::MAX);
    let mut rest = all.into_iter().filter(|t| *t > start);
    let items: Vec<String> = rest.by_ref().take(limit).collect();
    let more = rest.next().is_some();
    Page { items, more }
}

/// Whether a manifest put may move a tag that names another manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagWrite {
    /// A push: the tag moves (what clients expect).
    Move,
    /// An import: a tag set by someone else stays.
    KeepOther,
    /// Another node's push, read from its record (by digest).
    Adopted,
}
