//! What a node does with the bucket it shares with other nodes: content
//! another node stored is adopted into this node's index on a local miss.

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
