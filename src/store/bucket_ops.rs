//! What a node does with the bucket it shares with other nodes: content
//! another node stored is adopted into this node's index on a local miss,
//! and a request for an upload another node holds is reported.

use super::meta::Origin;
use super::{Store, StoreError, shared};
use crate::oci::{Digest, RepoName};

impl Store {
    /// The hosted records shared with other nodes; `None` on files.
    pub fn records(&self) -> Option<&shared::Records> {
        self.records.as_ref()
    }

    /// Whether content lives in a bucket other nodes share.
    pub fn is_shared(&self) -> bool {
        self.records.is_some()
    }

    /// A request named an upload session this node does not hold. Alone,
    /// that is a finished, cancelled or expired upload; on a shared bucket
    /// it is most often a load balancer that sent one push's requests to
    /// two nodes (each node holds its own uploads), which the operator must
    /// hear of: a warning, at most one a minute.
    pub(super) fn warn_of_stray_upload(&self, repo: &RepoName, id: &str) {
        use std::sync::atomic::Ordering;
        if !self.is_shared() {
            return;
        }
        let now = super::unix_now();
        let last = self.stray_upload_warned.load(Ordering::Relaxed);
        if now < last.saturating_add(60)
            || self
                .stray_upload_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // The id comes from the request: only its first 64 plain characters.
        let id: String = id
            .chars()
            .take(64)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        tracing::warn!(repo = %repo, upload = %id, "an upload session this node does not hold was asked for: nodes sharing a bucket each hold their own uploads, so the load balancer must keep each client on one node (nginx: hash $remote_addr consistent); or the upload had ended or expired");
    }

    /// Adopts `digest` into `repo` when another node stored it in the shared
    /// bucket: its size once recorded here, `None` when the bucket does not
    /// have it either (or content is not shared). The object is verified by
    /// name only: objects are written under their digest only after their
    /// bytes verified, by whichever node wrote them.
    pub async fn adopt_from_bucket(
        &self,
        repo: &RepoName,
        digest: &Digest,
        origin: Origin,
    ) -> Result<Option<u64>, StoreError> {
        if !self.is_shared() {
            return Ok(None);
        }
        let Some(size) = self.files.size_on_disk(digest).await? else {
            return Ok(None);
        };
        self.record_blob(repo, digest, size, origin).await?;
        Ok(Some(size))
    }
}
