//! Copies ahead of the import's walk. The walk (`mod.rs`) goes through the
//! tags one at a time and needs each image's blobs stored before it stores
//! the manifest; copying them one at a time leaves a core idle (one copy
//! hashes at about one core) and the disk waiting. So a task runs ahead of
//! the walk in the same order, reading the manifests the walk will import,
//! and copies the blobs they need with at most [`streams`] copies at once
//! (it waits for a free one before it starts the next: never unbounded, and
//! never far ahead). Each copy goes through the store's import path exactly
//! as the walk's own would (verified by digest before it is visible, off the
//! runtime); the walk takes the result when it reaches the blob, so the
//! report, the progress and a bad blob's images are the walk's as before.
//! A blob is copied once: by this task when it registered it first, by the
//! walk otherwise (the walk claims what it reaches unregistered).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::MAX_NESTING;
use super::tree::{ManifestRead, RepoDir, Tree};
use crate::oci::manifest::{MAX_MANIFEST_BYTES, ManifestKind};
use crate::oci::{Digest, ManifestView, RepoName};
use crate::store::{ImportedBlob, Store, StoreError};
use crate::workers::WorkerError;

/// Blobs copied at once: one more than the cores (a copy hashes at about
/// one core but also waits on the disk, its fsync above all), at least 2, at
/// most 4 (more only contends for the disk).
pub(super) fn streams() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() + 1)
        .clamp(2, 4)
}

/// One blob brought in from the tree: how it arrived, or why it was not
/// (missing, corrupt, unreadable: a bad blob); `Err` when the store failed.
pub(super) type Copied = Result<Result<ImportedBlob, String>, WorkerError>;

/// Who copies a blob.
enum Slot {
    /// The walk, inline.
    Walk,
    /// The task ahead; its result arrives here.
    Ahead(oneshot::Receiver<Copied>),
}

/// The task copying ahead of one pass's walk; stopped (with its copies)
/// when dropped.
pub(super) struct Ahead {
    slots: Arc<Mutex<HashMap<Digest, Slot>>>,
    task: JoinHandle<()>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ahead {
    /// Starts copying what the walk over `repos` will need.
    pub(super) fn start(
        store: Arc<Store>,
        tree: Arc<Tree>,
        repos: Arc<Vec<RepoDir>>,
        link: bool,
    ) -> Ahead {
        let slots = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(plan(store, tree, repos, link, slots.clone()));
        Ahead { slots, task }
    }

    /// The copy of `digest` started ahead, to await; `None` when the walk is
    /// to copy it itself (then it is claimed: the task will not).
    pub(super) fn take(&self, digest: &Digest) -> Option<oneshot::Receiver<Copied>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.insert(digest.clone(), Slot::Walk) {
            Some(Slot::Ahead(rx)) => Some(rx),
            _ => None,
        }
    }

    /// Waits for the task to finish and returns the blobs it copied that the
    /// walk never took (an image broken by another of its blobs): they were
    /// imported all the same, so the report counts them.
    pub(super) async fn finish(mut self) -> Vec<ImportedBlob> {
        if (&mut self.task).await.is_err() {
            return Vec::new();
        }
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .drain()
            .filter_map(|(_, slot)| match slot {
                Slot::Ahead(mut rx) => match rx.try_recv() {
                    Ok(Ok(Ok(b))) => Some(b),
                    _ => None,
                },
                Slot::Walk => None,
            })
            .collect()
    }
}

/// Copies `digest` from the tree into `repo` (see [`Copied`]).
pub(super) async fn copy(
    store: &Store,
    tree: Arc<Tree>,
    repo: &RepoName,
    digest: &Digest,
    link: bool,
) -> Copied {
    let d = digest.clone();
    let found = tokio::task::spawn_blocking(move || tree.blob(&d))
        .await
        .map_err(|e| WorkerError::Other(e.to_string()))?;
    let path = match found {
        Ok((path, _)) => path,
        Err(why) => return Ok(Err(why)),
    };
    match store.import_blob(repo, digest, &path, link).await {
        Ok(b) => Ok(Ok(b)),
        Err(StoreError::DigestMismatch { actual, .. }) => {
            Ok(Err(format!("corrupt: its bytes hash to {actual}")))
        }
        Err(e @ (StoreError::SizeInvalid(_) | StoreError::Io(_))) => {
            Ok(Err(format!("unreadable: {e}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads the manifest `digest` from the tree, checked against its digest;
/// `Ok(Err(why))` when it is missing, unreadable or corrupt.
pub(super) async fn read_manifest(
    tree: Arc<Tree>,
    digest: Digest,
) -> Result<Result<Vec<u8>, String>, WorkerError> {
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        match tree.manifest(&digest, MAX_MANIFEST_BYTES as u64) {
            ManifestRead::Bytes(b) => Ok(b),
            ManifestRead::BadBlob(why) | ManifestRead::NotAManifest(why) => Err(why),
        }
    })
    .await
    .map_err(|e| WorkerError::Other(e.to_string()))
}

/// The task: the walk's order, the walk's choices (a tag wharf has, a
/// manifest stored already, a blob not in the repository's `_layers` or
/// stored already: left to the walk), the blobs copied [`streams`] at a
/// time. Any failure here only stops the running ahead: the walk meets it
/// again and reports it.
async fn plan(
    store: Arc<Store>,
    tree: Arc<Tree>,
    repos: Arc<Vec<RepoDir>>,
    link: bool,
    slots: Arc<Mutex<HashMap<Digest, Slot>>>,
) {
    let permits = Arc::new(Semaphore::new(streams()));
    let mut copies = JoinSet::new();
    for repo in repos.iter() {
        let Ok(have) = store.tag_digests(&repo.name).await else {
            break;
        };
        for (tag, digest) in &repo.tags {
            if have.iter().any(|(t, _)| t == tag) {
                continue;
            }
            let Ok(None) = store.blob_size(&repo.name, digest).await else {
                continue;
            };
            let Ok(wanted) = blobs_under(&store, &tree, repo, digest).await else {
                break;
            };
            for d in wanted {
                let registered = || {
                    slots
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(&d)
                };
                if !repo.layers.contains(&d) || registered() {
                    continue;
                }
                let Ok(None) = store.stored_size(&d).await else {
                    continue;
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (tx, rx) = oneshot::channel();
                {
                    let mut s = slots.lock().unwrap_or_else(PoisonError::into_inner);
                    if s.contains_key(&d) {
                        continue;
                    }
                    s.insert(d.clone(), Slot::Ahead(rx));
                }
                let (store, tree, name) = (store.clone(), tree.clone(), repo.name.clone());
                copies.spawn(async move {
                    let done = copy(&store, tree, &name, &d, link).await;
                    drop(permit);
                    let _ = tx.send(done);
                });
                while copies.try_join_next().is_some() {}
            }
        }
    }
    while copies.join_next().await.is_some() {}
}

/// The blobs (not manifests) the image or index `digest` needs, in the
/// walk's order; children stored already in the repository are the walk's.
async fn blobs_under(
    store: &Store,
    tree: &Arc<Tree>,
    repo: &RepoDir,
    digest: &Digest,
) -> Result<Vec<Digest>, WorkerError> {
    let mut wanted = Vec::new();
    let mut stack = vec![(digest.clone(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(bytes) = read_manifest(tree.clone(), d).await? else {
            continue;
        };
        let Ok(view) = ManifestView::parse(&bytes, "") else {
            continue;
        };
        match view.kind {
            ManifestKind::Image => wanted.extend(
                view.blobs
                    .iter()
                    .filter(|b| !b.is_foreign())
                    .map(|b| b.digest.clone()),
            ),
            ManifestKind::Index if depth < MAX_NESTING => {
                for child in view.children.iter().rev() {
                    if store.blob_size(&repo.name, &child.digest).await?.is_none() {
                        stack.push((child.digest.clone(), depth + 1));
                    }
                }
            }
            ManifestKind::Index => {}
        }
    }
    Ok(wanted)
}
