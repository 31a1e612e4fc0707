//! Writing and removing the hosted records of what this node stores or
//! deletes (`shared/records.rs`), so the other nodes on the bucket see it:
//! records go out before this node's own rows (a row always has its record)
//! and are removed before them. On files every method here is a no-op.

use bytes::Bytes;

use super::{Store, StoreError, manifest_cache};
use crate::oci::{Digest, ManifestView, Reference, RepoName, Tag};

impl Store {
    /// Writes the records of a manifest this node just stored: the name, the
    /// manifest, then the tag (a tag never names a manifest other nodes
    /// cannot read).
    pub(super) async fn publish_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: Bytes,
        view: &ManifestView,
        tag: Option<&Tag>,
    ) -> Result<(), StoreError> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        records.publish_hosted(repo).await?;
        records
            .publish_manifest(repo, digest, body, &view.media_type)
            .await?;
        if let Some(subject) = &view.subject {
            records
                .publish_referrer(repo, &subject.digest, digest)
                .await?;
        }
        if let Some(t) = tag {
            self.tag_checks.mark(&manifest_cache::reference_key(
                repo.as_str(),
                &Reference::Tag(t.clone()),
            ));
            records.publish_tag(repo, t.as_str(), digest).await?;
        }
        Ok(())
    }

    /// Writes the record of a blob pushed or mounted into `repo`, so another
    /// node answers its HEAD (a client checks each blob before it pushes a
    /// manifest, maybe through another node).
    pub(super) async fn publish_layer(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        records.publish_hosted(repo).await?;
        records.publish_layer(repo, digest).await
    }

    /// Removes the records of what this node just deleted.
    pub(super) async fn unpublish(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), StoreError> {
        let Some(records) = self.records.as_ref().filter(|_| self.shares(repo)) else {
            return Ok(());
        };
        match reference {
            Reference::Tag(t) => records.remove_tag(repo, t.as_str()).await,
            Reference::Digest(d) => records.remove_manifest(repo, d).await,
        }
    }

    /// Removes the record of a blob unlinked from `repo`.
    pub(super) async fn unpublish_layer(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        match self.records.as_ref().filter(|_| self.shares(repo)) {
            Some(records) => records.remove_layer(repo, digest).await,
            None => Ok(()),
        }
    }
}
