//! Following the hosted records other nodes on a bucket write
//! (`shared/records.rs`; this node's own go out in `records_publish.rs`):
//! they are read where this node's index misses or a tag is older than
//! [`TAG_TTL`], so a push on one node is pulled from any other at once by
//! digest and within the TTL by tag. On files (`records` is `None`) every
//! method here is a no-op.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::ReadableTable as _;

use super::meta::{Origin, TagRecord, decode, encode};
use super::{Store, StoreError, manifest_cache, tables, unix_now};
use crate::oci::{Digest, ManifestView, Reference, RepoName, Tag};

/// How long a node trusts its copy of a hosted tag before it reads the tag's
/// record again (another node may have moved or deleted it).
pub const TAG_TTL: Duration = Duration::from_secs(2);
/// Tags whose last check is remembered; past it the memory is cleared (each
/// tag is then checked once more).
const MAX_CHECKED: usize = 65_536;
/// An index names its platform manifests; deeper nesting is not followed
/// when a manifest is read from the records.
const MAX_NESTING: u8 = 2;

/// When each hosted tag was last compared with its record.
#[derive(Default)]
pub(super) struct TagChecks {
    at: Mutex<HashMap<String, Instant>>,
}

impl TagChecks {
    /// Whether the tag behind `key` is due a check, and if so, counts it as
    /// checked now (so concurrent requests check it once).
    pub(super) fn claim(&self, key: &str) -> bool {
        let Ok(mut at) = self.at.lock() else {
            return true;
        };
        let now = Instant::now();
        if at
            .get(key)
            .is_some_and(|t| now.duration_since(*t) < TAG_TTL)
        {
            return false;
        }
        if at.len() >= MAX_CHECKED {
            at.clear();
        }
        at.insert(key.to_owned(), now);
        true
    }

    /// Counts the tag behind `key` as checked now (this node just wrote it).
    pub(super) fn mark(&self, key: &str) {
        if let Ok(mut at) = self.at.lock() {
            if at.len() >= MAX_CHECKED {
                at.clear();
            }
            at.insert(key.to_owned(), Instant::now());
        }
    }
}

impl Store {
    /// Whether `repo`'s content is shared through records: any name on a
    /// shared bucket but one this node mirrors (a name another node just
    /// pushed to may not be known here as hosted yet; the request was routed
    /// as hosted all the same).
    pub(super) fn shares(&self, repo: &RepoName) -> bool {
        self.records.is_some() && !crate::oci::routing::NameFacts::is_mirrored(self, repo.as_str())
    }

    /// Before a lookup of `reference` in a shared hosted repository: a tag
    /// older than [`TAG_TTL`] here is compared with its record and follows
    /// it (moved, deleted, or new to this node). A bucket that does not
    /// answer leaves the local answer standing, with a warning.
    pub(super) async fn follow_records(&self, repo: &RepoName, reference: &Reference) {
        if !self.shares(repo) {
            return;
        }
        let key = manifest_cache::reference_key(repo.as_str(), reference);
        if !self.tag_checks.claim(&key) {
            return;
        }
        let followed = match reference {
            Reference::Tag(tag) => self.follow_tag(repo, tag).await,
            Reference::Digest(d) => self.follow_manifest(repo, d).await,
        };
        if let Err(e) = followed {
            tracing::warn!(repo = %repo, reference = %reference, error = %e, "could not follow the record in the bucket; serving this node's copy");
        }
    }

    /// A manifest this node holds whose record is gone was deleted by
    /// another node: its rows go here too (unless a pin here needs it).
    async fn follow_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        if !self.has_manifest(repo, digest).await? || records.has_manifest(repo, digest).await? {
            return Ok(());
        }
        match self
            .delete_manifest_rows(repo, &Reference::Digest(digest.clone()), false)
            .await
        {
            Ok(()) | Err(StoreError::ManifestUnknown(_)) => Ok(()),
            Err(StoreError::Pinned { pin, .. }) => {
                tracing::warn!(repo = %repo, digest = %digest, pin = %pin, "another node deleted a manifest a pin here needs; kept on this node");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// This node's row is read before the record and replaced only if it is
    /// still what was read: a push on this node landing in between (its
    /// record, then its row) is never undone by an older record.
    async fn follow_tag(&self, repo: &RepoName, tag: &Tag) -> Result<(), StoreError> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        let local = self.tag_row(repo, tag).await?;
        let recorded = records.tag(repo, tag.as_str()).await?;
        match (recorded, &local) {
            (None, None) => Ok(()),
            (Some(d), Some(l)) if d.to_string() == *l => Ok(()),
            (None, Some(_)) => self.swap_tag_row(repo, tag, local, None).await,
            (Some(d), _) => {
                if !self.adopt_manifest(repo, &d, 0).await? {
                    tracing::warn!(repo = %repo, tag = %tag, digest = %d, "a tag record names a manifest with no record; ignored");
                    return Ok(());
                }
                self.swap_tag_row(repo, tag, local, Some(&d)).await
            }
        }
    }

    /// The digest this node's row of `tag` names.
    async fn tag_row(&self, repo: &RepoName, tag: &Tag) -> Result<Option<String>, StoreError> {
        let (r, t) = (repo.to_string(), tag.to_string());
        self.meta
            .read(move |txn| {
                Ok(txn
                    .open_table(tables::TAGS)?
                    .get((r.as_str(), t.as_str()))?
                    .map(|v| decode::<TagRecord>(v.value()))
                    .transpose()?
                    .map(|rec| rec.digest))
            })
            .await
    }

    /// Points this node's row of `tag` at `digest` (a manifest it holds), or
    /// removes it (`None`), only if the row still names `expected`.
    async fn swap_tag_row(
        &self,
        repo: &RepoName,
        tag: &Tag,
        expected: Option<String>,
        digest: Option<&Digest>,
    ) -> Result<(), StoreError> {
        let (r, t) = (repo.to_string(), tag.to_string());
        let rec = digest
            .map(|d| {
                encode(&TagRecord {
                    digest: d.to_string(),
                    updated: unix_now(),
                    checked: None,
                })
            })
            .transpose()?;
        self.meta
            .write(move |txn| {
                let mut tags = txn.open_table(tables::TAGS)?;
                let now = tags
                    .get((r.as_str(), t.as_str()))?
                    .map(|v| decode::<TagRecord>(v.value()))
                    .transpose()?
                    .map(|rec| rec.digest);
                if now != expected {
                    return Ok(());
                }
                match &rec {
                    Some(rec) => {
                        tags.insert((r.as_str(), t.as_str()), rec.as_slice())?;
                    }
                    None => {
                        tags.remove((r.as_str(), t.as_str()))?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// After a local miss of `digest` in a shared hosted repository: reads
    /// its record and stores it here (with what it references, adopted from
    /// the bucket); whether there was one.
    pub(super) async fn manifest_from_records(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        if !self.shares(repo) {
            return Ok(false);
        }
        self.adopt_manifest(repo, digest, 0).await
    }

    /// Stores the recorded manifest `digest` of `repo` in this node's index,
    /// its children first; whether a record exists.
    pub(super) fn adopt_manifest<'a>(
        &'a self,
        repo: &'a RepoName,
        digest: &'a Digest,
        depth: u8,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, StoreError>> + Send + 'a>>
    {
        Box::pin(async move {
            let Some(records) = &self.records else {
                return Ok(false);
            };
            if self.has_manifest(repo, digest).await? {
                return Ok(true);
            }
            let Some(rec) = records.manifest(repo, digest).await? else {
                return Ok(false);
            };
            let (bytes, media_type) = (rec.bytes.clone(), rec.media_type.clone());
            let view = tokio::task::spawn_blocking(move || {
                ManifestView::parse(&bytes, &media_type)
                    .map_err(|e| StoreError::ManifestInvalid(e.to_string()))
            })
            .await??;
            if depth < MAX_NESTING {
                for child in &view.children {
                    self.adopt_manifest(repo, &child.digest, depth + 1).await?;
                }
            }
            for blob in view.blobs.iter().filter(|d| !d.is_foreign()) {
                if self.blob_size(repo, &blob.digest).await?.is_none() {
                    self.adopt_from_bucket(repo, &blob.digest, Origin::Pushed)
                        .await?;
                }
            }
            self.store_recorded_manifest(repo, digest, rec.bytes, &rec.media_type)
                .await?;
            Ok(true)
        })
    }

    /// After a local miss of a blob in a shared hosted repository: adopts it
    /// when a record says it was pushed there; its size.
    pub(super) async fn layer_from_records(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        if !self.shares(repo) {
            return Ok(None);
        }
        match self.adopt_layer(repo, digest).await {
            Ok(size) => Ok(size),
            // The bucket not answering leaves this node's answer (unknown)
            // standing: a client checking before it uploads then uploads.
            Err(e @ StoreError::Io(_)) => {
                tracing::warn!(repo = %repo, digest = %digest, error = %e, "could not read the blob's record in the bucket; answering from this node's index");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Adopts `digest` into `repo` when a record says some node pushed it
    /// there; its size.
    pub(super) async fn adopt_layer(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        let Some(records) = &self.records else {
            return Ok(None);
        };
        if !records.has_layer(repo, digest).await? {
            return Ok(None);
        }
        self.adopt_from_bucket(repo, digest, Origin::Pushed).await
    }

    /// Before a referrers listing in a hosted repository on a shared
    /// bucket: takes in the referring manifests other nodes recorded (and
    /// drops referrer records whose manifest was deleted since).
    pub async fn follow_referrers(&self, repo: &RepoName, subject: &Digest) {
        let Some(records) = self.records.as_ref().filter(|_| self.shares(repo)) else {
            return;
        };
        let followed: Result<(), StoreError> = async {
            let recorded = records.referrers(repo, subject).await?;
            for d in &recorded {
                if !self.adopt_manifest(repo, d, 0).await? {
                    records.remove_referrer(repo, subject, d).await?;
                }
            }
            // Held here but recorded nowhere: deleted by another node.
            for desc in self.referrers(repo, subject, None).await? {
                if !recorded.contains(&desc.digest) {
                    self.follow_manifest(repo, &desc.digest).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = followed {
            tracing::warn!(repo = %repo, subject = %subject, error = %e, "could not read the referrer records in the bucket; listing this node's referrers");
        }
    }

    /// Tags of a shared hosted repository as the records have them (every
    /// node's pushes); `None` on files or for other repositories.
    pub(super) async fn recorded_tags(
        &self,
        repo: &RepoName,
    ) -> Result<Option<Vec<String>>, StoreError> {
        match self.records.as_ref().filter(|_| self.shares(repo)) {
            Some(records) => records.tags(repo).await.map(Some),
            None => Ok(None),
        }
    }
}
