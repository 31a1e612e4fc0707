//! One queue item done against a target: copying a reference (the blobs the
//! target lacks, child manifests before an index, the manifest, then the
//! tag) or deleting one. Bytes are sent as stored: the target gets the
//! digests the client pushed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::TargetRule;
use crate::oci::{Digest, ManifestView, Reference, RepoName};
use crate::store::{ManifestInfo, Store, StoreError};
use crate::upstream::UpstreamError;
use crate::upstream::target::Deleted;

/// How deep an index may nest (an index of indexes is allowed once).
const MAX_DEPTH: usize = 2;

/// Why an item could not be done.
#[derive(Debug, thiserror::Error)]
pub(super) enum CopyError {
    /// The target failed or refused.
    #[error("target: {0}")]
    Target(#[from] UpstreamError),
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] StoreError),
    /// The target takes our credentials but refuses this repository (they
    /// may push only some names): the repository's items wait, the other
    /// repositories go on.
    #[error("target refuses this repository: {0}")]
    Refused(String),
    /// The item can never succeed as it is; it is dropped (and logged).
    #[error("{0}")]
    Permanent(String),
}

impl CopyError {
    /// The target is down or asks us to slow down: stop sending it anything
    /// for now (every other item would fail the same way).
    pub(super) fn is_outage(&self) -> bool {
        matches!(
            self,
            CopyError::Target(
                UpstreamError::Unavailable(_)
                    | UpstreamError::CircuitOpen(_)
                    | UpstreamError::TooManyRequests { .. }
                    | UpstreamError::Denied(_)
            )
        )
    }

    /// A refusal (401/403) as what it is: the target's, when it refuses our
    /// credentials altogether (an outage until they are fixed), or only this
    /// repository's, when `GET /v2/` with them passes.
    pub(super) async fn refine(self, rule: &TargetRule) -> CopyError {
        match self {
            CopyError::Target(UpstreamError::Denied(why)) => match rule.target.ping().await {
                Ok(()) => CopyError::Refused(why),
                Err(_) => CopyError::Target(UpstreamError::Denied(why)),
            },
            e => e,
        }
    }

    /// How long the target asked us to wait, in seconds.
    pub(super) fn retry_after(&self) -> Option<u64> {
        match self {
            CopyError::Target(UpstreamError::TooManyRequests { retry_after }) => *retry_after,
            _ => None,
        }
    }
}

/// What a pass did to one target, counted as it goes.
#[derive(Debug, Default, Serialize)]
pub struct PassCounts {
    /// References copied (the target now has them as here).
    pub copied: AtomicU64,
    /// References deleted on the target.
    pub deleted: AtomicU64,
    /// Blobs uploaded.
    pub blobs_sent: AtomicU64,
    /// Blobs mounted from another repository on the target.
    pub blobs_mounted: AtomicU64,
    /// Blobs the target had already.
    pub blobs_present: AtomicU64,
    /// Blob and manifest bytes uploaded.
    pub bytes_sent: AtomicU64,
    /// Attempts that failed (the items stay queued).
    pub failed: AtomicU64,
    /// Items the target refused for good (dropped, logged).
    pub dropped: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Blobs of one manifest sent side by side.
const BLOBS_AT_ONCE: usize = 4;

/// One item's work on one target. Cheap to clone (blob tasks take a copy).
#[derive(Clone)]
pub(super) struct Copier {
    pub(super) store: Arc<Store>,
    pub(super) rule: Arc<TargetRule>,
    pub(super) counts: Arc<PassCounts>,
}

impl Copier {
    /// Makes the target hold `reference` of `repo` as it is here now. A
    /// reference that is gone here (deleted since it was queued) is done.
    pub(super) async fn copy(&self, repo: &RepoName, reference: &str) -> Result<(), CopyError> {
        let reference: Reference = reference
            .parse()
            .map_err(|e| CopyError::Permanent(format!("queued reference {reference:?}: {e}")))?;
        let info = match self.store.manifest_info(repo, &reference).await {
            Ok(info) => info,
            Err(StoreError::ManifestUnknown(_) | StoreError::NameUnknown(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let tag = match &reference {
            Reference::Tag(tag) => {
                let there = self
                    .rule
                    .target
                    .manifest_digest(repo.as_str(), tag.as_str())
                    .await?;
                if there.as_ref() == Some(&info.digest) {
                    return Ok(());
                }
                Some(tag.as_str())
            }
            Reference::Digest(_) => None,
        };
        self.manifest(repo, &info, 0, tag).await?;
        add(&self.counts.copied, 1);
        Ok(())
    }

    /// Makes the target hold the manifest `info` and everything it needs,
    /// put last: under `tag` (which names the manifest too), or by digest.
    async fn manifest(
        &self,
        repo: &RepoName,
        info: &ManifestInfo,
        depth: usize,
        tag: Option<&str>,
    ) -> Result<(), CopyError> {
        let bytes = self.store.manifest_bytes(info).await?;
        let target = &self.rule.target;
        let digest = info.digest.to_string();
        let present =
            target.manifest_digest(repo.as_str(), &digest).await? == Some(info.digest.clone());
        if !present {
            let (b, mt) = (bytes.clone(), info.media_type.clone());
            let view = tokio::task::spawn_blocking(move || ManifestView::parse(&b, &mt))
                .await
                .map_err(StoreError::from)?
                .map_err(|e| CopyError::Permanent(format!("stored manifest {digest}: {e}")))?;
            for child in &view.children {
                if depth >= MAX_DEPTH {
                    return Err(CopyError::Permanent(format!(
                        "{digest} nests indexes deeper than {MAX_DEPTH}"
                    )));
                }
                let child_info = self
                    .store
                    .manifest_info(repo, &Reference::Digest(child.digest.clone()))
                    .await?;
                Box::pin(self.manifest(repo, &child_info, depth + 1, None)).await?;
            }
            self.blobs(repo, view.blobs.iter().map(|b| b.digest.clone()).collect())
                .await?;
        }
        if present && tag.is_none() {
            return Ok(());
        }
        let reference = tag.unwrap_or(&digest);
        target
            .put_manifest(repo.as_str(), reference, &info.media_type, bytes.clone())
            .await?;
        add(&self.counts.bytes_sent, bytes.len() as u64);
        Ok(())
    }

    /// Makes the target hold every blob of `digests` in `repo`,
    /// [`BLOBS_AT_ONCE`] at a time; the first failure is the answer (the
    /// others still finish or stop on their own).
    async fn blobs(&self, repo: &RepoName, digests: Vec<Digest>) -> Result<(), CopyError> {
        let mut pending = digests.into_iter();
        let mut set = tokio::task::JoinSet::new();
        let mut first_err = None;
        loop {
            while set.len() < BLOBS_AT_ONCE && first_err.is_none() {
                let Some(d) = pending.next() else { break };
                let (me, repo) = (self.clone(), repo.clone());
                set.spawn(async move { me.blob(&repo, &d).await });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let r = joined.unwrap_or_else(|e| {
                Err(CopyError::Permanent(format!(
                    "a blob upload task stopped: {e}"
                )))
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Makes the target hold blob `digest` in `repo`: mounted from a
    /// repository of the target known to hold it, present already, or sent.
    async fn blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), CopyError> {
        let target = &self.rule.target;
        let _mine = self.rule.mounts.handle(digest).await;
        // Known elsewhere on the target: mount without asking first (a
        // mount the target cannot do opens, and closes, an upload instead).
        if let Some(from) = self.rule.mounts.source(digest) {
            if from != repo.as_str() && target.mount_blob(repo.as_str(), digest, &from).await? {
                self.rule.mounts.remember(digest, repo.as_str());
                add(&self.counts.blobs_mounted, 1);
                return Ok(());
            }
        }
        if target.has_blob(repo.as_str(), digest).await? {
            self.rule.mounts.remember(digest, repo.as_str());
            add(&self.counts.blobs_present, 1);
            return Ok(());
        }
        let (reader, size) = self.store.open_blob(repo, digest).await?;
        let body = reqwest::Body::wrap(crate::blob_body::ReaderBody::new(reader, 0, size));
        target.push_blob(repo.as_str(), digest, size, body).await?;
        self.rule.mounts.remember(digest, repo.as_str());
        add(&self.counts.blobs_sent, 1);
        add(&self.counts.bytes_sent, size);
        Ok(())
    }

    /// Removes `reference` of `repo` from the target. `was` is the manifest a
    /// deleted tag named here (unknown for a tag only the target had). A
    /// target that cannot delete a tag alone (Distribution 2.8) loses the tag
    /// by the deletion of the manifest it names there, but only when that is
    /// the manifest the tag named here and no tag here still names it.
    pub(super) async fn delete(
        &self,
        repo: &RepoName,
        reference: &str,
        was: Option<&str>,
    ) -> Result<(), CopyError> {
        let target = &self.rule.target;
        match target.delete_manifest(repo.as_str(), reference).await? {
            Deleted::Done | Deleted::Absent => {
                add(&self.counts.deleted, 1);
                return Ok(());
            }
            Deleted::Unsupported => {}
        }
        let refuses = || {
            CopyError::Permanent(format!(
                "{} refuses to delete {repo}:{reference} (for Distribution, set storage.delete.enabled: true)",
                target.url()
            ))
        };
        let is_tag = matches!(reference.parse::<Reference>(), Ok(Reference::Tag(_)));
        if !is_tag {
            return Err(refuses());
        }
        // The manifest the tag names on the target now; a tag only the target
        // had (a reconcile's deletion) is known by this alone.
        let Some(there) = target.manifest_digest(repo.as_str(), reference).await? else {
            add(&self.counts.deleted, 1);
            return Ok(());
        };
        let there = there.to_string();
        if was.is_some_and(|w| w != there) {
            // The tag there names something else than what went here: not
            // ours to remove.
            add(&self.counts.deleted, 1);
            return Ok(());
        }
        let still_named = self
            .store
            .tag_digests(repo)
            .await?
            .iter()
            .any(|(_, d)| *d == there);
        if still_named {
            return Err(CopyError::Permanent(format!(
                "{} cannot delete the tag {repo}:{reference} alone, and a tag here still names its manifest {there}",
                target.url()
            )));
        }
        let was = there.as_str();
        match target.delete_manifest(repo.as_str(), was).await? {
            Deleted::Done | Deleted::Absent => {
                add(&self.counts.deleted, 1);
                Ok(())
            }
            Deleted::Unsupported => Err(refuses()),
        }
    }
}
