//! Which digests are between "file committed" and "rows written" right now.
//!
//! A push writes its content file first and its index rows after (the file
//! must exist before any row names it). When the rows then fail, the file would
//! stay behind, unindexed, until the next start. Removing it is only safe when
//! no other push of the same bytes is past its own file commit (it found the
//! file there and will name it) and no row names it already. Every store path
//! that commits a file and then records it holds a [`Hold`] for the digest
//! across both steps; a failed one hands its hold to [`Hold::discard`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Content, Meta, StoreError, tables};
use crate::oci::Digest;

/// In-flight commits by digest.
#[derive(Default)]
pub(super) struct Commits {
    counts: Mutex<HashMap<Digest, usize>>,
    /// Taken shared to register a commit and exclusively by a discard's
    /// check-then-remove, so no commit can start between the check and the
    /// removal (it would find the file, skip writing its own, and lose it).
    gate: Arc<tokio::sync::RwLock<()>>,
    /// Woken when the last commit in flight ends (shutdown waits for it).
    idle: tokio::sync::Notify,
}

/// One commit of `digest` in flight; released on drop.
pub(super) struct Hold {
    commits: Arc<Commits>,
    digest: Digest,
}

impl Commits {
    /// Registers a commit of `digest`; hold it until the rows are written.
    pub(super) async fn hold(self: &Arc<Self>, digest: &Digest) -> Result<Hold, StoreError> {
        let _shared = self.gate.read().await;
        *self
            .counts
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .entry(digest.clone())
            .or_insert(0) += 1;
        Ok(Hold {
            commits: self.clone(),
            digest: digest.clone(),
        })
    }

    /// Takes the gate exclusively: no commit registers while it is held. A
    /// removal of content files (gc, eviction, verify) checks, under it, that
    /// no commit of a digest is in flight and no row names it, then removes.
    pub(super) async fn exclusive(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate.clone().write_owned().await
    }

    /// Every digest whose commit is between its file and its rows now (a
    /// node's live set names them: their objects may exist before any row).
    pub(super) fn digests(&self) -> Vec<Digest> {
        self.counts
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a commit of `digest` is between its file and its rows.
    pub(super) fn in_flight(&self, digest: &Digest) -> bool {
        self.count(digest) > 0
    }

    /// Waits until no commit is in flight, at most `limit`; whether none is.
    /// Shutdown calls it before closing the index, so a download that renamed
    /// its file gets to write its rows rather than leave an orphan for
    /// start-up to set aside.
    pub(super) async fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let woken = self.idle.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.counts.lock().map(|c| c.is_empty()).unwrap_or(true) {
                return true;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return false;
            }
        }
    }

    fn count(&self, digest: &Digest) -> usize {
        self.counts
            .lock()
            .map(|c| c.get(digest).copied().unwrap_or(0))
            // Poisoned: assume someone else needs the file.
            .unwrap_or(usize::MAX)
    }
}

impl Hold {
    /// The rows of this commit were not written: removes the content file
    /// unless another commit of the digest is in flight or the index names it.
    /// Runs on its own task, so a caller that goes away cannot cut it between
    /// the check and the removal; waits for it.
    pub(super) async fn discard(self, meta: Meta, files: Content) {
        let gate = self.commits.gate.clone();
        let task = tokio::spawn(async move {
            let _exclusive = gate.write_owned().await;
            if self.commits.count(&self.digest) > 1 {
                return;
            }
            let d = self.digest.to_string();
            let named = meta
                .read(move |txn| Ok(txn.open_table(tables::BLOBS)?.get(d.as_str())?.is_some()))
                .await;
            match named {
                Ok(true) => {}
                Ok(false) => match files.remove(&self.digest).await {
                    Ok(()) => {
                        tracing::debug!(digest = %self.digest, "file of a failed push removed")
                    }
                    Err(e) => {
                        tracing::warn!(digest = %self.digest, error = %e, "file of a failed push not removed")
                    }
                },
                Err(e) => {
                    tracing::warn!(digest = %self.digest, error = %e, "file of a failed push kept: index unreadable")
                }
            }
            // The hold is released here, after the removal, still under the gate.
            drop(self);
        });
        let _ = task.await;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.commits.counts.lock() {
            if let Some(n) = counts.get_mut(&self.digest) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.digest);
                    if counts.is_empty() {
                        self.commits.idle.notify_waiters();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn setup(dir: &std::path::Path) -> (Meta, Content, Digest) {
        let meta = Meta::open(&dir.join("index.redb")).unwrap();
        let files = Content::fs(dir);
        files.prepare(true).await.unwrap();
        let mut w = files.writer().unwrap();
        w.write(Bytes::from_static(b"manifest bytes"))
            .await
            .unwrap();
        let (digest, _) = w.commit(None).await.unwrap();
        (meta, files, digest)
    }

    #[tokio::test]
    async fn shutdown_waits_for_commits_in_flight() {
        let commits = Arc::new(Commits::default());
        assert!(commits.wait_idle(std::time::Duration::ZERO).await);
        let digest = Digest::of_bytes(b"x");
        let hold = commits.hold(&digest).await.unwrap();
        let second = commits.hold(&digest).await.unwrap();
        assert!(
            !commits
                .wait_idle(std::time::Duration::from_millis(20))
                .await,
            "two commits are in flight"
        );
        let waiter = tokio::spawn({
            let c = commits.clone();
            async move { c.wait_idle(std::time::Duration::from_secs(30)).await }
        });
        drop(hold);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one commit is still in flight");
        drop(second);
        assert!(waiter.await.unwrap(), "the last one ended");
    }

    async fn stored(files: &Content, digest: &Digest) -> bool {
        files.size_on_disk(digest).await.unwrap().is_some()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lone_failed_commit_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, files, digest) = setup(dir.path()).await;
        let commits = Arc::new(Commits::default());
        let hold = commits.hold(&digest).await.unwrap();
        hold.discard(meta.clone(), files.clone()).await;
        assert!(!stored(&files, &digest).await);
        assert_eq!(commits.count(&digest), 0);
        meta.close();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_concurrent_commit_of_the_same_bytes_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, files, digest) = setup(dir.path()).await;
        let commits = Arc::new(Commits::default());
        let other = commits.hold(&digest).await.unwrap();
        let failed = commits.hold(&digest).await.unwrap();
        failed.discard(meta.clone(), files.clone()).await;
        assert!(stored(&files, &digest).await);
        drop(other);
        assert_eq!(commits.count(&digest), 0);
        meta.close();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_file_the_index_names_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, files, digest) = setup(dir.path()).await;
        let d = digest.to_string();
        meta.write(move |txn| {
            txn.open_table(tables::BLOBS)?
                .insert(d.as_str(), b"{}".as_slice())?;
            Ok(())
        })
        .await
        .unwrap();
        let commits = Arc::new(Commits::default());
        let hold = commits.hold(&digest).await.unwrap();
        hold.discard(meta.clone(), files.clone()).await;
        assert!(stored(&files, &digest).await);
        meta.close();
    }
}
