//! Import (`wharf import DIR [--link]`, on demand only): brings a
//! `registry:2` filesystem storage root into the store, through the store's
//! normal write paths, as hosted repositories. For each repository, each tag
//! (`_manifests/tags/<tag>/current/link`) is followed to its manifest; the
//! blobs it needs (only those the repository links in `_layers`, as
//! `registry:2` serves) are copied or hard-linked in, each verified by digest
//! (`store/import_ops.rs`); an index's children go in before the index; the
//! manifest goes in under its tag with `put_manifest`, which checks its
//! references like any push. A missing or corrupt blob is never imported: it
//! is reported with the images it breaks, and every manifest needing it is
//! skipped. Schema 1 manifests are reported and skipped. Revisions no tag
//! reaches (deleted tags) are not imported, only counted. Content already in
//! wharf is not copied again, so a second run copies nothing. The tree is
//! only read (`tree.rs` says how it is distrusted). Blobs are copied a few
//! at a time by a task running ahead of the walk (`ahead.rs`).

mod ahead;
mod names;
mod report;
mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use report::{AlreadyThere, BadBlob, ImportReport, MAX_LISTED};
pub use tree::Skipped;
use tree::{ManifestRead, RepoDir, Tree};

use super::{Progress, WorkerError};
use crate::oci::manifest::{MAX_MANIFEST_BYTES, ManifestKind};
use crate::oci::routing::RouteRules;
use crate::oci::{Digest, ManifestView, Reference, RepoName};
use crate::store::{ImportedBlob, Store, StoreError};
use ahead::Ahead;

/// Deepest index nesting followed (an index of indexes of images).
const MAX_NESTING: usize = 2;

/// The import worker.
pub struct Import {
    store: Arc<Store>,
    progress: Arc<Progress>,
    /// Name routing: only names a push could make hosted are imported (`names.rs`).
    routes: RouteRules,
}

impl Import {
    /// An importer into `store`, writing only names `routes` lets a push write.
    pub fn new(store: Arc<Store>, routes: RouteRules) -> Import {
        Import {
            store,
            progress: Arc::default(),
            routes,
        }
    }

    /// Imports the storage root `dir` (hard links where possible with
    /// `link`). [`WorkerError::Refused`] when `dir` is not a `registry:2`
    /// storage root.
    pub async fn pass(&self, dir: PathBuf, link: bool) -> Result<ImportReport, WorkerError> {
        let tree = tokio::task::spawn_blocking(move || Tree::open(&dir))
            .await
            .map_err(|e| WorkerError::Other(e.to_string()))?
            .map_err(WorkerError::Refused)?;
        let tree = Arc::new(tree);
        let t = tree.clone();
        let (mut repos, mut skips) = tokio::task::spawn_blocking(move || t.repositories())
            .await
            .map_err(|e| WorkerError::Other(e.to_string()))?;
        repos.retain(
            |r| match names::refusal(&self.routes, &*self.store, &r.name) {
                None => true,
                Some(reason) => {
                    skips.push(Skipped {
                        what: format!("repositories/{}", r.name),
                        reason,
                    });
                    false
                }
            },
        );
        let repos = Arc::new(repos);
        self.progress
            .start(repos.iter().map(|r| r.tags.len() as u64).sum());
        let mut pass = Pass {
            store: &self.store,
            ahead: Ahead::start(self.store.clone(), tree.clone(), repos.clone(), link),
            tree,
            link,
            report: ImportReport {
                link,
                ..ImportReport::default()
            },
            blobs: HashMap::new(),
            bad: BTreeMap::new(),
        };
        pass.report.root = pass.tree.root().display().to_string();
        for s in skips {
            pass.report.skip(s);
        }
        for repo in repos.iter() {
            pass.repository(repo, &self.progress).await?;
        }
        let Pass {
            ahead,
            mut report,
            bad,
            ..
        } = pass;
        for b in ahead.finish().await {
            count(&mut report, b);
        }
        report.set_bad(bad);
        tracing::info!(
            root = %report.root,
            repositories = report.repositories,
            tags = report.tags,
            manifests = report.manifests,
            copied = report.blobs_copied,
            linked = report.blobs_linked,
            bytes = report.bytes,
            bad_blobs = report.bad_blobs.len(),
            skipped = report.skipped.len() as u64 + report.skipped_more,
            "import finished"
        );
        Ok(report)
    }
}

impl super::Worker for Import {
    type Report = ImportReport;

    fn name(&self) -> &'static str {
        "import"
    }

    fn interval(&self) -> Option<Duration> {
        None
    }

    fn progress(&self) -> Option<Arc<Progress>> {
        Some(self.progress.clone())
    }

    async fn run_once(&self) -> Result<ImportReport, WorkerError> {
        Err(WorkerError::Refused(
            "an import needs a directory: run `wharf import DIR` (POST /_wharf/v1/import)".into(),
        ))
    }
}

/// Counts a blob brought in; returns its size.
fn count(report: &mut ImportReport, b: ImportedBlob) -> u64 {
    let n = match b {
        ImportedBlob::Copied(n) => {
            report.blobs_copied += 1;
            n
        }
        ImportedBlob::Linked(n) => {
            report.blobs_linked += 1;
            n
        }
    };
    report.bytes += n;
    n
}

/// Why an image (or a part of it) was not imported.
enum Broken {
    /// It needs this blob, which was not imported (see the pass's `bad`).
    Blob(Digest),
    /// Anything else, in words.
    Other(String),
}

/// One pass's state.
struct Pass<'a> {
    store: &'a Store,
    /// The copies running ahead of this walk.
    ahead: Ahead,
    tree: Arc<Tree>,
    link: bool,
    report: ImportReport,
    /// Blobs seen this pass: their size, or why they were not imported.
    blobs: HashMap<Digest, Result<u64, String>>,
    /// Bad blobs: digest → (reason, images they break).
    bad: BTreeMap<String, (String, Vec<String>)>,
}

impl Pass<'_> {
    async fn repository(&mut self, repo: &RepoDir, progress: &Progress) -> Result<(), WorkerError> {
        let have: HashMap<String, String> = self
            .store
            .tag_digests(&repo.name)
            .await?
            .into_iter()
            .collect();
        let mut reached = BTreeSet::new();
        let mut any = false;
        for (tag, digest) in &repo.tags {
            let image = format!("{}:{tag}", repo.name);
            reached.insert(digest.clone());
            match have.get(tag) {
                Some(d) if *d == digest.to_string() => {
                    self.report.already_there.tags += 1;
                    any = true;
                }
                Some(d) => self.report.skip(Skipped {
                    what: image,
                    reason: format!(
                        "wharf has this tag at {d} already (the tree says {digest}); left as it is"
                    ),
                }),
                None => match self.tag(repo, tag, digest, &mut reached).await? {
                    Ok(()) => {
                        self.report.tags += 1;
                        any = true;
                    }
                    Err(broken) => self.broken(&image, broken),
                },
            }
            progress.advance(1);
        }
        if any {
            self.report.repositories += 1;
        }
        // A revision neither a tag reached this pass nor already in wharf
        // (an index's child) is an untagged one: left out.
        for rev in repo.revisions.difference(&reached) {
            if self.store.blob_size(&repo.name, rev).await?.is_none() {
                self.report.untagged_left += 1;
            }
        }
        Ok(())
    }

    /// Records an image left out.
    fn broken(&mut self, image: &str, broken: Broken) {
        let reason = match broken {
            Broken::Blob(d) => {
                let entry = self.bad.entry(d.to_string()).or_default();
                entry.1.push(image.to_owned());
                format!("needs {d}, which was not imported ({})", entry.0)
            }
            Broken::Other(why) => why,
        };
        self.report.skip(Skipped {
            what: image.to_owned(),
            reason,
        });
    }

    /// Imports what `digest` needs, then the manifest under `tag`.
    async fn tag(
        &mut self,
        repo: &RepoDir,
        tag: &str,
        digest: &Digest,
        reached: &mut BTreeSet<Digest>,
    ) -> Result<Result<(), Broken>, WorkerError> {
        let (bytes, media_type) = if self.store.blob_size(&repo.name, digest).await?.is_some() {
            self.report.already_there.manifests += 1;
            let info = self
                .store
                .manifest_info(&repo.name, &Reference::Digest(digest.clone()))
                .await?;
            (self.store.manifest_bytes(&info).await?, info.media_type)
        } else {
            match self.manifest(repo, digest, 0, reached).await? {
                Ok(m) => {
                    self.report.manifests += 1;
                    m
                }
                Err(b) => return Ok(Err(b)),
            }
        };
        let reference = match tag.parse() {
            Ok(t) => Reference::Tag(t),
            Err(e) => return Ok(Err(Broken::Other(format!("{e}")))),
        };
        match self
            .store
            .put_manifest_keeping_tag(&repo.name, &reference, bytes, &media_type)
            .await
        {
            Ok(_) => Ok(Ok(())),
            // A push set the tag since this pass read it: the push wins.
            Err(StoreError::TagTaken { digest: d, .. }) => Ok(Err(Broken::Other(format!(
                "wharf has this tag at {d} already (the tree says {digest}); left as it is"
            )))),
            Err(e) => Self::refused(e),
        }
    }

    /// Stores a manifest; a refusal of this manifest (not of the store) is
    /// a [`Broken`].
    async fn put(
        &mut self,
        repo: &RepoName,
        reference: &Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Result<(), Broken>, WorkerError> {
        match self
            .store
            .put_manifest(repo, reference, bytes, media_type)
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(e) => Self::refused(e),
        }
    }

    /// A refusal of one manifest is a [`Broken`]; anything else (the store
    /// failing) ends the pass.
    fn refused(e: StoreError) -> Result<Result<(), Broken>, WorkerError> {
        match e {
            e @ (StoreError::ManifestInvalid(_) | StoreError::ManifestBlobUnknown(_)) => {
                Ok(Err(Broken::Other(e.to_string())))
            }
            e => Err(e.into()),
        }
    }

    /// Reads and checks the manifest `digest` from the tree and imports
    /// everything it needs (children stored before this returns); returns
    /// its bytes and media type, not stored yet.
    async fn manifest(
        &mut self,
        repo: &RepoDir,
        digest: &Digest,
        depth: usize,
        reached: &mut BTreeSet<Digest>,
    ) -> Result<Result<(Bytes, String), Broken>, WorkerError> {
        if let Some(Err(_)) = self.blobs.get(digest) {
            return Ok(Err(Broken::Blob(digest.clone())));
        }
        let (tree, d) = (self.tree.clone(), digest.clone());
        let read =
            tokio::task::spawn_blocking(move || tree.manifest(&d, MAX_MANIFEST_BYTES as u64))
                .await
                .map_err(|e| WorkerError::Other(e.to_string()))?;
        let bytes = match read {
            ManifestRead::Bytes(b) => Bytes::from(b),
            ManifestRead::BadBlob(why) => return Ok(Err(self.bad_blob(digest, why))),
            ManifestRead::NotAManifest(why) => return Ok(Err(Broken::Other(why))),
        };
        let view = match ManifestView::parse(&bytes, "") {
            Ok(v) => v,
            Err(e) => {
                let schema1 = bytes.windows(16).any(|w| w == b"\"schemaVersion\":")
                    && serde_json::from_slice::<serde_json::Value>(&bytes)
                        .is_ok_and(|v| v["schemaVersion"] == 1);
                let why = if schema1 {
                    format!(
                        "manifest {digest} is Docker schema 1, which wharf does not store (convert it: pull and push it again with a current client)"
                    )
                } else {
                    format!("manifest {digest}: {e}")
                };
                return Ok(Err(Broken::Other(why)));
            }
        };
        match view.kind {
            ManifestKind::Image => {
                for desc in view.blobs.iter().filter(|d| !d.is_foreign()) {
                    if let Err(b) = self.blob(repo, &desc.digest).await? {
                        return Ok(Err(b));
                    }
                }
            }
            ManifestKind::Index => {
                if depth >= MAX_NESTING {
                    return Ok(Err(Broken::Other(format!(
                        "manifest {digest}: indexes nested deeper than {MAX_NESTING}"
                    ))));
                }
                for child in &view.children {
                    reached.insert(child.digest.clone());
                    if self
                        .store
                        .blob_size(&repo.name, &child.digest)
                        .await?
                        .is_some()
                    {
                        self.report.already_there.manifests += 1;
                        continue;
                    }
                    let (b, mt) =
                        match Box::pin(self.manifest(repo, &child.digest, depth + 1, reached))
                            .await?
                        {
                            Ok(m) => m,
                            Err(b) => return Ok(Err(b)),
                        };
                    let r = Reference::Digest(child.digest.clone());
                    if let Err(b) = self.put(&repo.name, &r, b, &mt).await? {
                        return Ok(Err(b));
                    }
                    self.report.manifests += 1;
                }
            }
        }
        Ok(Ok((bytes, view.media_type)))
    }

    /// Notes a bad blob and returns the [`Broken`] for what needs it.
    fn bad_blob(&mut self, digest: &Digest, why: String) -> Broken {
        self.blobs.insert(digest.clone(), Err(why.clone()));
        self.bad
            .entry(digest.to_string())
            .or_insert_with(|| (why, Vec::new()));
        Broken::Blob(digest.clone())
    }

    /// Makes blob `digest` readable in the repository: linked when wharf has
    /// it, copied or linked in from the tree (verified) otherwise.
    async fn blob(
        &mut self,
        repo: &RepoDir,
        digest: &Digest,
    ) -> Result<Result<(), Broken>, WorkerError> {
        if !repo.layers.contains(digest) {
            return Ok(Err(Broken::Other(format!(
                "it needs {digest}, which {} does not link in _layers (registry:2 does not serve it through that repository either)",
                repo.name
            ))));
        }
        let known = match self.blobs.get(digest) {
            Some(Err(_)) => return Ok(Err(Broken::Blob(digest.clone()))),
            Some(Ok(size)) => Some(*size),
            None => {
                // Copied ahead (into the first repository that needed it),
                // or ours to bring in.
                let ahead = match self.ahead.take(digest) {
                    Some(rx) => rx.await.ok(),
                    None => None,
                };
                if let Some(copied) = ahead {
                    return self.copied(repo, digest, copied).await;
                }
                match self.store.stored_size(digest).await? {
                    Some(size) => {
                        self.report.already_there.blobs += 1;
                        self.blobs.insert(digest.clone(), Ok(size));
                        Some(size)
                    }
                    None => None,
                }
            }
        };
        if let Some(size) = known {
            if self.store.blob_size(&repo.name, digest).await?.is_none() {
                self.store.link_stored(&repo.name, digest, size).await?;
            }
            return Ok(Ok(()));
        }
        let copied =
            ahead::copy(self.store, self.tree.clone(), &repo.name, digest, self.link).await;
        self.copied(repo, digest, copied).await
    }

    /// Records a copy of `digest` (by the walk or ahead of it) and makes it
    /// readable in the repository.
    async fn copied(
        &mut self,
        repo: &RepoDir,
        digest: &Digest,
        copied: ahead::Copied,
    ) -> Result<Result<(), Broken>, WorkerError> {
        let n = match copied? {
            Ok(b) => count(&mut self.report, b),
            Err(why) => return Ok(Err(self.bad_blob(digest, why))),
        };
        self.blobs.insert(digest.clone(), Ok(n));
        if self.store.blob_size(&repo.name, digest).await?.is_none() {
            self.store.link_stored(&repo.name, digest, n).await?;
        }
        Ok(Ok(()))
    }
}
