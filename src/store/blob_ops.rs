//! Blob reads, links, mounts and the upload lifecycle.

use std::time::Duration;

use redb::ReadableTable;

use super::meta::{BlobRecord, Origin, RepoRecord, UploadRecord, decode, encode};
use super::{SessionHandle, Store, StoreError, tables, unix_now};
use crate::oci::{Digest, RepoName};

/// Links `digest` into `repo` and makes sure the repository row exists; used by
/// uploads and mounts inside their write transaction. Content linked into a
/// hosted repository is labelled pushed, however it got there. Returns the
/// change of cached bytes.
pub(super) fn link(
    txn: &redb::WriteTransaction,
    repo: &str,
    digest: &str,
    origin: Origin,
) -> Result<i64, StoreError> {
    txn.open_table(tables::REPO_BLOBS)?
        .insert((repo, digest), ())?;
    ensure_repo(txn, repo, origin)?;
    super::labels::label_linked(txn, repo, digest)
}

/// Creates the repository row if missing.
pub(super) fn ensure_repo(
    txn: &redb::WriteTransaction,
    repo: &str,
    origin: Origin,
) -> Result<(), StoreError> {
    let mut repos = txn.open_table(tables::REPOS)?;
    if repos.get(repo)?.is_none() {
        let rec = encode(&RepoRecord {
            origin,
            upstream: None,
        })?;
        repos.insert(repo, rec.as_slice())?;
    }
    Ok(())
}

/// Size of a blob readable in `repo` (a linked blob, or a manifest of the repo).
pub(super) fn readable_size(
    txn: &redb::ReadTransaction,
    repo: &str,
    digest: &str,
) -> Result<Option<u64>, StoreError> {
    let linked = txn
        .open_table(tables::REPO_BLOBS)?
        .get((repo, digest))?
        .is_some()
        || txn
            .open_table(tables::MANIFESTS)?
            .get((repo, digest))?
            .is_some();
    if !linked {
        return Ok(None);
    }
    match txn.open_table(tables::BLOBS)?.get(digest)? {
        Some(v) => Ok(Some(decode::<BlobRecord>(v.value())?.size)),
        None => Ok(None),
    }
}

impl Store {
    /// [`Store::blob_size`] for a repository routed as hosted: on a shared
    /// bucket, also a blob another node recorded as pushed there (taken into
    /// this node's index).
    pub async fn hosted_blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        match self.blob_size(repo, digest).await? {
            Some(size) => Ok(Some(size)),
            None => self.layer_from_records(repo, digest).await,
        }
    }

    /// [`Store::open_blob`] for a repository routed as hosted (see
    /// [`Store::hosted_blob_size`]).
    pub async fn open_hosted_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(super::BlobReader, u64), StoreError> {
        // One index read on a hit (every pull); the records only on a miss.
        match self.open_blob(repo, digest).await {
            Err(StoreError::BlobUnknown(d)) => {
                if self.layer_from_records(repo, digest).await?.is_none() {
                    return Err(StoreError::BlobUnknown(d));
                }
                self.open_blob(repo, digest).await
            }
            other => other,
        }
    }

    /// Size of `digest` if this node's index makes it readable through `repo`.
    pub async fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, StoreError> {
        let (r, d) = (repo.to_string(), digest.to_string());
        let size = self
            .meta
            .read(move |txn| readable_size(txn, &r, &d))
            .await?;
        if size.is_some() {
            self.touch(digest);
        }
        Ok(size)
    }

    /// Opens `digest` for reading through `repo`: a reader and its size. The
    /// reader carries a use of the digest (taken before the lookup, so a pass
    /// that removes the rows after it sees the use and leaves the content), which
    /// keeps eviction and gc away until the reader drops.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(super::BlobReader, u64), StoreError> {
        let in_use = self.hold_in_use(digest);
        let size = self
            .blob_size(repo, digest)
            .await?
            .ok_or_else(|| StoreError::BlobUnknown(digest.clone()))?;
        match self.files.open(digest).await? {
            Some(reader) => Ok((reader.keep_alive(in_use), size)),
            None => {
                tracing::error!(digest = %digest, "index names a blob whose file is missing");
                Err(StoreError::BlobUnknown(digest.clone()))
            }
        }
    }

    /// A URL the client may fetch `digest`'s stored bytes from directly for
    /// `ttl` (`[storage.s3] redirect`); `None` when the backend serves its
    /// own bytes (files).
    pub async fn blob_redirect(
        &self,
        digest: &Digest,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        self.files.presigned_get(digest, ttl).await
    }

    /// Removes the link of `digest` from `repo` (the file goes later, through
    /// gc). A blob a pinned image of `repo` needs is refused with
    /// [`StoreError::Pinned`]: the image would no longer pull.
    pub async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        // A blob another node took in is linked here first, so its record
        // goes with the link.
        if self.is_shared() {
            self.hosted_blob_size(repo, digest).await?;
        }
        let (r, d) = (repo.to_string(), digest.to_string());
        let dg = digest.clone();
        self.meta
            .write(move |txn| {
                if txn
                    .open_table(tables::REPO_BLOBS)?
                    .get((r.as_str(), d.as_str()))?
                    .is_some()
                {
                    super::pin_ops::refuse_if_pinned(txn, &r, None, Some(&d))?;
                }
                let removed = txn
                    .open_table(tables::REPO_BLOBS)?
                    .remove((r.as_str(), d.as_str()))?
                    .is_some();
                if removed {
                    Ok(())
                } else {
                    Err(StoreError::BlobUnknown(dg.clone()))
                }
            })
            .await?;
        self.unpublish_layer(repo, digest).await
    }

    /// Cross-repository mount: links `digest` into `repo` if `from` has it.
    /// Returns false when `from` does not (the caller then opens an upload).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        let (r, f, d) = (repo.to_string(), from.to_string(), digest.to_string());
        self.touch(digest);
        let changes = self.changes_handle();
        let (present, delta) = self
            .meta
            .write(move |txn| {
                let present = txn
                    .open_table(tables::REPO_BLOBS)?
                    .get((f.as_str(), d.as_str()))?
                    .is_some()
                    && txn.open_table(tables::BLOBS)?.get(d.as_str())?.is_some();
                let mut delta = 0;
                if present {
                    changes.note([d.as_str()]);
                    delta = link(txn, &r, &d, Origin::Pushed)?;
                }
                Ok((present, delta))
            })
            .await?;
        self.cache_delta(delta);
        if present {
            self.mark_pushed(repo);
            self.publish_layer(repo, digest).await?;
        }
        Ok(present)
    }

    /// Opens an upload session in `repo` for `client` (the address its caps
    /// count against) and returns its id. The temp file is created only when
    /// the first byte arrives. Refused with [`StoreError::TooManyUploads`] when
    /// the client or the daemon holds too many sessions.
    pub async fn begin_upload(
        &self,
        repo: &RepoName,
        client: std::net::IpAddr,
    ) -> Result<String, StoreError> {
        let writer = self.files.lazy_writer()?;
        let id = self.uploads.insert(repo.clone(), client, writer)?;
        let rec = encode(&UploadRecord {
            repo: repo.to_string(),
            started: unix_now(),
        })?;
        let key = id.clone();
        let recorded = self
            .meta
            .write(move |txn| {
                txn.open_table(tables::UPLOADS)?
                    .insert(key.as_str(), rec.as_slice())?;
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            self.uploads.remove(&id)?;
            return Err(e);
        }
        Ok(id)
    }

    /// The session `id`, only if it belongs to `repo` (an id is no key to another repo).
    pub fn upload(&self, repo: &RepoName, id: &str) -> Result<SessionHandle, StoreError> {
        let found = self.uploads.get(repo, id)?;
        if found.is_none() {
            self.warn_of_stray_upload(repo, id);
        }
        found.ok_or(StoreError::UploadUnknown)
    }

    /// Completes a session: verifies `digest`, stores the file, links it into the
    /// session's repository. On a digest mismatch the session is discarded.
    pub async fn finish_upload(
        &self,
        id: &str,
        session: &mut super::UploadSession,
        digest: &Digest,
    ) -> Result<u64, StoreError> {
        let writer = session.writer.take().ok_or(StoreError::UploadUnknown)?;
        let hold = self.commits.hold(digest).await?;
        let committed = writer.commit(Some(digest)).await;
        let forget = self.forget_upload(id).await;
        let (digest, size) = committed?;
        forget?;
        let recorded = self
            .record_blob(&session.repo, &digest, size, Origin::Pushed)
            .await;
        if let Err(e) = recorded {
            hold.discard(self.meta.clone(), self.files.clone()).await;
            return Err(e);
        }
        drop(hold);
        self.publish_layer(&session.repo, &digest).await?;
        Ok(size)
    }

    /// Finishes a writer the caller filled (a single-request push, a download):
    /// verifies `expected`, moves the file into place and records it in `repo`,
    /// as one commit that a failed manifest push's cleanup never races.
    pub async fn store_blob(
        &self,
        writer: super::BlobWriter,
        repo: &RepoName,
        expected: &Digest,
        origin: Origin,
    ) -> Result<(Digest, u64), StoreError> {
        let hold = self.commits.hold(expected).await?;
        let (digest, size) = writer.commit(Some(expected)).await?;
        if let Err(e) = self.record_blob(repo, &digest, size, origin).await {
            hold.discard(self.meta.clone(), self.files.clone()).await;
            return Err(e);
        }
        drop(hold);
        if origin == Origin::Pushed {
            self.publish_layer(repo, &digest).await?;
        }
        Ok((digest, size))
    }

    /// A fresh temp-file writer, for bodies streamed by the caller; the file
    /// exists when this returns (readers of a download open it by path).
    pub async fn new_writer(&self) -> Result<super::BlobWriter, StoreError> {
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files.writer()).await?
    }

    /// A writer whose temp file is created with its first bytes (no blocking
    /// hop up front), for bodies nobody reads while they are written.
    pub(super) fn lazy_writer(&self) -> Result<super::BlobWriter, StoreError> {
        self.files.lazy_writer()
    }

    /// Records a committed file and links it into `repo`.
    pub async fn record_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        origin: Origin,
    ) -> Result<(), StoreError> {
        let (r, d) = (repo.to_string(), digest.to_string());
        // A touch before the write: a gc sweep that runs first finds the blob
        // young, one that runs after finds the new link.
        self.touch(digest);
        let changes = self.changes_handle();
        let delta = self
            .meta
            .write(move |txn| {
                changes.note([d.as_str()]);
                let mut delta = 0i64;
                {
                    let mut blobs = txn.open_table(tables::BLOBS)?;
                    let existing = blobs
                        .get(d.as_str())?
                        .map(|v| decode::<BlobRecord>(v.value()))
                        .transpose()?;
                    let rec = match existing {
                        // Pushed wins: a pushed copy must never be evicted as cache.
                        Some(mut rec)
                            if origin == Origin::Pushed && rec.origin != Origin::Pushed =>
                        {
                            rec.origin = Origin::Pushed;
                            delta -= rec.size as i64;
                            Some(rec)
                        }
                        Some(_) => None,
                        None => {
                            if origin == Origin::Cached {
                                delta += size as i64;
                            }
                            Some(BlobRecord {
                                size,
                                created: unix_now(),
                                origin,
                                pinned: false,
                            })
                        }
                    };
                    if let Some(rec) = rec {
                        blobs.insert(d.as_str(), encode(&rec)?.as_slice())?;
                    }
                }
                Ok(delta + link(txn, &r, &d, origin)?)
            })
            .await?;
        self.cache_delta(delta);
        match origin {
            Origin::Pushed => self.mark_pushed(repo),
            Origin::Cached => self.mark_mirrored(repo),
        }
        Ok(())
    }

    /// Cancels a session and drops its temp file.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), StoreError> {
        self.upload(repo, id)?;
        self.uploads.discard(id).await?;
        self.forget_upload(id).await
    }

    async fn forget_upload(&self, id: &str) -> Result<(), StoreError> {
        self.uploads.remove(id)?;
        let key = id.to_owned();
        self.meta
            .write(move |txn| {
                txn.open_table(tables::UPLOADS)?.remove(key.as_str())?;
                Ok(())
            })
            .await
    }

    /// Cancels sessions idle for `expiry`, and those that never received a
    /// byte idle for `unwritten`; returns how many. Idle sessions still holding
    /// an open file (their last request was cut off) are parked on the way.
    pub async fn expire_uploads(
        &self,
        expiry: Duration,
        unwritten: Duration,
    ) -> Result<usize, StoreError> {
        let ids = self.uploads.idle(expiry, unwritten)?;
        for id in &ids {
            self.uploads.discard(id).await?;
            self.forget_upload(id).await?;
        }
        for handle in self.uploads.unparked()? {
            // A session a request has just picked up is left to that request.
            if let Ok(mut session) = handle.try_lock() {
                if let Err(e) = session.park().await {
                    tracing::warn!(error = %e, "idle upload could not close its file");
                }
            }
        }
        Ok(ids.len())
    }
}
