//! Hosted records as small objects, so a push on one node is visible to
//! every node: `hosted/<name>/_` (the name holds pushed content),
//! `repos/<name>/tags/<tag>` (the digest it names),
//! `repos/<name>/manifests/<digest>` (the manifest bytes, served type as the
//! object's Content-Type), `repos/<name>/layers/<digest>` (a blob pushed
//! or mounted into the repository) and
//! `repos/<name>/referrers/<subject>/<digest>` (a manifest refers to
//! `subject`, for the referrers API).
//!
//! A name's components never start with `_` or contain `/tags/`-like
//! ambiguity that matters: tags and digests contain no `/`, so a key splits
//! from the right.
//!
//! Records are written after the node's own index committed (a push is
//! acknowledged once both are written); a node reads them when its own index
//! misses, and re-reads a tag once its local copy is older than the TTL.

use std::sync::Arc;

use bytes::Bytes;
use object_store::{Attribute, Attributes, ObjectStoreExt as _, PutOptions, PutPayload};

use super::{Bucket, failed};
use crate::oci::manifest::MAX_MANIFEST_BYTES;
use crate::oci::{Digest, RepoName};
use crate::store::StoreError;

/// A tag record holds a digest: never more than this.
const MAX_TAG_RECORD: u64 = 200;

/// The hosted records of one bucket.
#[derive(Debug, Clone)]
pub struct Records {
    bucket: Arc<Bucket>,
}

/// A manifest as recorded: its bytes (verified against the digest) and the
/// type it is served with.
#[derive(Debug, Clone)]
pub struct RecordedManifest {
    /// The manifest bytes.
    pub bytes: Bytes,
    /// Its media type.
    pub media_type: String,
}

/// The last component of a `hosted/` record: never a name's component (those
/// start with a letter or digit), so `hosted/team/_` and
/// `hosted/team/app/_` coexist. A record at `hosted/team` itself would be
/// both an object and the prefix of `hosted/team/app`, which MinIO refuses
/// (`XMinioParentIsObject`): pushing `team/app` after `team` would fail.
const HOSTED_LEAF: &str = "/_";

fn hosted_key(repo: &str) -> String {
    format!("hosted/{repo}{HOSTED_LEAF}")
}

fn tag_key(repo: &str, tag: &str) -> String {
    format!("repos/{repo}/tags/{tag}")
}

fn manifest_key(repo: &str, digest: &Digest) -> String {
    format!("repos/{repo}/manifests/{digest}")
}

fn referrer_dir(repo: &str, subject: &Digest) -> String {
    format!("repos/{repo}/referrers/{subject}/")
}

fn referrer_key(repo: &str, subject: &Digest, digest: &Digest) -> String {
    format!("{}{digest}", referrer_dir(repo, subject))
}

fn layer_key(repo: &str, digest: &Digest) -> String {
    format!("repos/{repo}/layers/{digest}")
}

impl Records {
    /// The records in `bucket`.
    pub fn new(bucket: Arc<Bucket>) -> Records {
        Records { bucket }
    }

    /// The bucket they live in.
    pub fn bucket(&self) -> &Arc<Bucket> {
        &self.bucket
    }

    /// Records that `repo` holds pushed content.
    pub async fn publish_hosted(&self, repo: &RepoName) -> Result<(), StoreError> {
        let rel = hosted_key(repo.as_str());
        self.bucket
            .create(&rel, Bytes::from(self.bucket.node_id().to_owned()))
            .await
            .map(|_| ())
    }

    /// Whether some node recorded `repo` as holding pushed content.
    pub async fn is_hosted(&self, repo: &RepoName) -> Result<bool, StoreError> {
        Ok(self
            .bucket
            .head(&hosted_key(repo.as_str()))
            .await?
            .is_some())
    }

    /// Records a manifest (before any tag names it).
    pub async fn publish_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<(), StoreError> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, media_type.to_owned().into());
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        self.bucket
            .objects()
            .put_opts(
                &self.bucket.key(&manifest_key(repo.as_str(), digest)),
                PutPayload::from(bytes),
                opts,
            )
            .await
            .map_err(|e| failed("write", e))?;
        Ok(())
    }

    /// Points `tag` at `digest`.
    pub async fn publish_tag(
        &self,
        repo: &RepoName,
        tag: &str,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        self.bucket
            .put(
                &tag_key(repo.as_str(), tag),
                Bytes::from(digest.to_string()),
            )
            .await
    }

    /// Records that manifest `digest` of `repo` refers to `subject` (the
    /// referrers API on another node lists these).
    pub async fn publish_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        self.bucket
            .put(&referrer_key(repo.as_str(), subject, digest), Bytes::new())
            .await
    }

    /// The manifests recorded as referring to `subject` in `repo` (some may
    /// since have been deleted: their manifest record is then gone).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Digest>, StoreError> {
        Ok(self
            .bucket
            .list_names(&referrer_dir(repo.as_str(), subject))
            .await?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect())
    }

    /// Removes the record that `digest` refers to `subject`.
    pub async fn remove_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        self.bucket
            .delete(&referrer_key(repo.as_str(), subject, digest))
            .await
    }

    /// Records that `digest` was pushed or mounted into `repo`.
    pub async fn publish_layer(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        self.bucket
            .put(&layer_key(repo.as_str(), digest), Bytes::new())
            .await
    }

    /// What `tag` names; `None` when no node has it.
    pub async fn tag(&self, repo: &RepoName, tag: &str) -> Result<Option<Digest>, StoreError> {
        let Some(small) = self
            .bucket
            .get_small(&tag_key(repo.as_str(), tag), MAX_TAG_RECORD)
            .await?
        else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&small.bytes);
        text.trim().parse().map(Some).map_err(|_| {
            StoreError::Corrupt(format!(
                "tag record {repo}:{tag} in the bucket does not hold a digest"
            ))
        })
    }

    /// The manifest `digest` of `repo`, verified; `None` when no node
    /// recorded it. Bytes that do not hash to `digest` are an error, never
    /// served.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<RecordedManifest>, StoreError> {
        let key = self.bucket.key(&manifest_key(repo.as_str(), digest));
        let got = match self.bucket.objects().get(&key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed("read", e)),
        };
        if got.meta.size > MAX_MANIFEST_BYTES as u64 {
            return Err(StoreError::Corrupt(format!(
                "manifest record {key} is larger than a manifest may be"
            )));
        }
        let media_type = got
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let bytes = got.bytes().await.map_err(|e| failed("read", e))?;
        // Up to 4 MiB to hash (and maybe parse): off the runtime.
        let checked = bytes.clone();
        let (actual, media_type) = tokio::task::spawn_blocking(move || {
            let media_type = match media_type {
                Some(t) if !t.is_empty() => t,
                _ => media_type_of(&checked),
            };
            (Digest::of_bytes(&checked), media_type)
        })
        .await?;
        if actual != *digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(Some(RecordedManifest { bytes, media_type }))
    }

    /// Whether a manifest record of `digest` exists in `repo`.
    pub async fn has_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .bucket
            .head(&manifest_key(repo.as_str(), digest))
            .await?
            .is_some())
    }

    /// Whether `digest` was pushed or mounted into `repo` on some node.
    pub async fn has_layer(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .bucket
            .head(&layer_key(repo.as_str(), digest))
            .await?
            .is_some())
    }

    /// Every tag of `repo`, sorted.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, StoreError> {
        self.bucket.list_names(&format!("repos/{repo}/tags/")).await
    }

    /// Every name holding pushed content on some node, sorted.
    pub async fn hosted(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .bucket
            .list_all("hosted/")
            .await?
            .into_iter()
            .filter_map(|rel| {
                let name = rel.strip_prefix("hosted/")?;
                Some(name.strip_suffix(HOSTED_LEAF)?.to_owned())
            })
            .filter(|n| n.parse::<RepoName>().is_ok())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Removes a tag.
    pub async fn remove_tag(&self, repo: &RepoName, tag: &str) -> Result<(), StoreError> {
        self.bucket.delete(&tag_key(repo.as_str(), tag)).await
    }

    /// Removes a manifest, every tag naming it and its referrer record.
    pub async fn remove_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        for tag in self.tags(repo).await? {
            if self.tag(repo, &tag).await?.as_ref() == Some(digest) {
                self.remove_tag(repo, &tag).await?;
            }
        }
        if let Some(rec) = self.manifest(repo, digest).await? {
            let subject = tokio::task::spawn_blocking(move || {
                crate::oci::ManifestView::parse(&rec.bytes, &rec.media_type)
                    .ok()
                    .and_then(|v| v.subject)
            })
            .await?;
            if let Some(s) = subject {
                self.remove_referrer(repo, &s.digest, digest).await?;
            }
        }
        self.bucket
            .delete(&manifest_key(repo.as_str(), digest))
            .await
    }

    /// Removes a blob's link into `repo`.
    pub async fn remove_layer(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        self.bucket.delete(&layer_key(repo.as_str(), digest)).await
    }
}

/// The media type a manifest declares (for a record written without a
/// Content-Type); the OCI image manifest's when it declares none (only an
/// OCI manifest may leave `mediaType` out).
fn media_type_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned())
}
