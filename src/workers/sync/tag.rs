//! One tag of one rule brought up to date: a forced revalidation (one HEAD,
//! which also marks the tag checked; a tag that moved gets a second one that
//! fetches), then whatever of its closure is missing locally (the platform manifests the rule keeps, configs, layers)
//! fetched through the client path. An unchanged tag with everything here
//! costs its HEAD and nothing else.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::SyncRule;
use crate::oci::manifest::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::oci::{Digest, ManifestView, Reference, Tag};
use crate::proxy::{CacheResult, Proxy, ProxyError, TagAnswer};
use crate::store::{ManifestInfo, Store};
use crate::upstream::Upstreams;

/// The client address sync's downloads count against (`downloads_per_client`):
/// no real client has it.
pub const SYNC_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// How long a blob waits for a free download slot before it counts as failed.
const SLOT_WAIT: Duration = Duration::from_secs(120);
/// How often it looks for one meanwhile.
const SLOT_POLL: Duration = Duration::from_millis(200);

/// Whether a manifest media type is an index (OCI or Docker's list).
fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// What became of one tag.
#[derive(Debug)]
pub enum Outcome {
    /// Unchanged upstream, everything here.
    Unchanged,
    /// Moved or incomplete; brought up to date with this many bytes downloaded.
    Fetched(u64),
    /// Needs fetching, but the rule paused.
    Skipped,
}

/// What every tag of one rule's pass shares.
pub struct Ctx {
    /// The rule.
    pub rule: Arc<SyncRule>,
    /// The pull-through engine.
    pub proxy: Arc<Proxy>,
    /// The store.
    pub store: Arc<Store>,
    /// The upstreams (for the pull limit).
    pub upstreams: Arc<Upstreams>,
    /// Blob downloads sync may run at once, across tags.
    pub downloads: Arc<Semaphore>,
    /// Set once the pull limit fell under the floor: no more GETs this pass.
    pub paused: AtomicBool,
    /// The remaining pulls when it paused.
    pub paused_at: std::sync::Mutex<Option<i64>>,
}

impl Ctx {
    /// Whether the rule must stop fetching: checked before every GET.
    pub fn paused(&self) -> bool {
        if self.paused.load(Ordering::Acquire) {
            return true;
        }
        let remaining = self
            .upstreams
            .get(self.rule.upstream)
            .and_then(|u| u.ratelimit_remaining());
        match remaining {
            Some(r) if u64::try_from(r).unwrap_or(0) < self.rule.ratelimit_floor => {
                if !self.paused.swap(true, Ordering::AcqRel) {
                    if let Ok(mut p) = self.paused_at.lock() {
                        *p = Some(r);
                    }
                    tracing::warn!(
                        image = %self.rule.image,
                        remaining = r,
                        floor = self.rule.ratelimit_floor,
                        "sync paused: the upstream's pull limit is under the rule's ratelimit_floor; no more fetches this pass (HEADs go on)"
                    );
                }
                true
            }
            _ => false,
        }
    }

    /// Brings `tag` up to date.
    pub async fn sync(self: &Arc<Self>, tag: &Tag) -> Result<Outcome, ProxyError> {
        let r = &self.rule;
        // The HEAD first, which also brings the upstream's current pull
        // allowance: the pause is decided on that, never on a figure left
        // from an earlier pass. A tag that moved is then fetched through the
        // same revalidation (one more HEAD, free), unless paused.
        let mut answer = self
            .proxy
            .revalidate_tag(r.upstream, &r.local, &r.remote, tag, false)
            .await?;
        if matches!(answer, TagAnswer::Moved(_)) {
            if self.paused() {
                return Ok(Outcome::Skipped);
            }
            answer = self
                .proxy
                .revalidate_tag(r.upstream, &r.local, &r.remote, tag, true)
                .await?;
        }
        let (info, cache) = match answer {
            TagAnswer::Served(info, cache) => (info, cache),
            TagAnswer::Moved(_) => return Ok(Outcome::Skipped),
        };
        let mut changed = cache != CacheResult::Hit;
        let children = self.children(&info).await?;
        let mut missing = self
            .store
            .closure_missing(&r.local, &info.digest, children.clone())
            .await?;
        if missing.is_empty() {
            return Ok(if changed {
                Outcome::Fetched(0)
            } else {
                Outcome::Unchanged
            });
        }
        if !missing.manifests.is_empty() {
            for d in &missing.manifests {
                if self.paused() {
                    return Ok(Outcome::Skipped);
                }
                self.proxy
                    .manifest(
                        r.upstream,
                        &r.local,
                        &r.remote,
                        &Reference::Digest(d.clone()),
                    )
                    .await?;
            }
            changed = true;
            missing = self
                .store
                .closure_missing(&r.local, &info.digest, children.clone())
                .await?;
        }
        if !missing.blobs.is_empty() {
            // Registries do not serve foreign layers (Windows base layers):
            // never ask for them, or such a tag would fail every pass.
            let foreign = self.foreign_layers(&info, children).await?;
            missing.blobs.retain(|d| !foreign.contains(d));
        }
        if missing.blobs.is_empty() {
            return Ok(if changed {
                Outcome::Fetched(0)
            } else {
                Outcome::Unchanged
            });
        }
        if self.paused() {
            return Ok(Outcome::Skipped);
        }
        let mut set = JoinSet::new();
        for d in missing.blobs {
            let ctx = self.clone();
            set.spawn(async move { ctx.blob(&d).await });
        }
        let mut bytes = 0;
        let mut first_error = None;
        while let Some(done) = set.join_next().await {
            match done {
                Ok(Ok(n)) => bytes += n,
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(e) => {
                    first_error =
                        first_error.or(Some(ProxyError::TooManyDownloads(if e.is_panic() {
                            "a sync download task panicked"
                        } else {
                            "a sync download task was cancelled"
                        })))
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Outcome::Fetched(bytes)),
        }
    }

    /// The foreign layers the image manifests of `root` name (the root
    /// itself, or the `children` of an index: those kept, or all of them).
    async fn foreign_layers(
        &self,
        root: &ManifestInfo,
        children: Option<Vec<Digest>>,
    ) -> Result<HashSet<Digest>, ProxyError> {
        let images: Vec<ManifestInfo> = match children {
            Some(kids) => self.infos(&kids).await,
            None if is_index(&root.media_type) => {
                let view = self.view(root).await?;
                let kids: Vec<Digest> = view.children.iter().map(|c| c.digest.clone()).collect();
                self.infos(&kids).await
            }
            None => vec![root.clone()],
        };
        let mut out = HashSet::new();
        for info in &images {
            let view = self.view(info).await?;
            out.extend(
                view.blobs
                    .iter()
                    .filter(|b| b.is_foreign())
                    .map(|b| b.digest.clone()),
            );
        }
        Ok(out)
    }

    /// What the store knows of those of the manifests `digests` it holds.
    async fn infos(&self, digests: &[Digest]) -> Vec<ManifestInfo> {
        let mut out = Vec::new();
        for d in digests {
            let reference = Reference::Digest(d.clone());
            if let Ok(info) = self.store.manifest_info(&self.rule.local, &reference).await {
                out.push(info);
            }
        }
        out
    }

    /// A stored manifest, parsed off the runtime.
    async fn view(&self, info: &ManifestInfo) -> Result<ManifestView, ProxyError> {
        let bytes = self.store.manifest_bytes(info).await?;
        let mt = info.media_type.clone();
        let view = tokio::task::spawn_blocking(move || ManifestView::parse(&bytes, &mt))
            .await
            .map_err(crate::store::StoreError::from)?
            .map_err(|e| crate::store::StoreError::ManifestInvalid(e.to_string()))?;
        Ok(view)
    }

    /// The children of an index the rule keeps: `None` for all of them (no
    /// `platforms`, or not an index).
    async fn children(&self, info: &ManifestInfo) -> Result<Option<Vec<Digest>>, ProxyError> {
        let specs = &self.rule.platforms;
        if specs.is_empty() || !is_index(&info.media_type) {
            return Ok(None);
        }
        let view = self.view(info).await?;
        let kept: Vec<Digest> = view
            .children
            .iter()
            .filter(|c| {
                c.platform
                    .as_ref()
                    .is_some_and(|p| specs.iter().any(|s| s.matches(p)))
            })
            .map(|c| c.digest.clone())
            .collect();
        if kept.is_empty() {
            let want: Vec<String> = specs.iter().map(ToString::to_string).collect();
            return Err(crate::store::StoreError::ManifestInvalid(format!(
                "the index lists none of the platforms {}",
                want.join(", ")
            ))
            .into());
        }
        Ok(Some(kept))
    }

    /// One blob, through the shared download, within sync's share of the
    /// download slots; waits for a slot while clients hold them all.
    async fn blob(&self, digest: &Digest) -> Result<u64, ProxyError> {
        let _permit = self
            .downloads
            .acquire()
            .await
            .map_err(|_| ProxyError::TooManyDownloads("sync's download slots are closed"))?;
        let r = &self.rule;
        let started = Instant::now();
        loop {
            match self
                .proxy
                .prefetch_blob(r.upstream, &r.local, &r.remote, digest, SYNC_CLIENT)
                .await
            {
                Err(ProxyError::TooManyDownloads(_)) if started.elapsed() < SLOT_WAIT => {
                    tokio::time::sleep(SLOT_POLL).await;
                }
                other => return other,
            }
        }
    }
}
