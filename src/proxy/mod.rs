//! The pull-through policy: what to serve from the cache, when to ask the
//! upstream, and what to do when it is down. Requests reach it through their
//! [`Source`] (`source.rs`), resolved once per request: hosted names are
//! answered by the store, mirrored ones by the policy here.
//!
//! - Manifests by digest are immutable: served locally once fetched.
//! - Manifests by tag are trusted for the upstream's `manifest_ttl`, then
//!   revalidated with a HEAD (free against Docker Hub's pull limit) and fetched
//!   with GET only if the digest changed. An upstream that sends no digest on
//!   HEAD is asked with a GET instead, and those bytes are kept.
//! - Blobs come through one download per digest (`inflight`); on a bucket
//!   other nodes share, that download first looks in the bucket and waits
//!   for another node's fill of the same blob (`fill`).
//! - All the upstream calls one request makes share one [`Deadline`], so a
//!   sick upstream costs a client a bounded wait, never an unbounded one.
//! - Upstream down: cached content keeps being served; an expired tag is served
//!   stale; only true misses fail.

mod fill;
mod gauges;
pub mod health;
pub mod inflight;
mod prefetch;
pub mod source;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::limits::{ClientSlots, Full, SlotGuard};
use crate::metrics::Metrics;
use crate::oci::{Digest, Reference, RepoName};
use crate::store::{BlobReader, ManifestInfo, Origin, Store, StoreError};
use crate::upstream::peers::Peers;
use crate::upstream::{Deadline, Upstream, UpstreamError, Upstreams};
pub use gauges::StorageView;
use inflight::{DlState, Download, DownloadError, Inflight, Publisher};
pub use source::{Blob, NextPage, PAGE_MAX, Source, TagList, query_value};

/// Where a response came from, sent as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache.
    Hit,
    /// Fetched from the upstream now.
    Miss,
    /// Served from a LAN peer.
    Peer,
    /// Served from the cache past its TTL because the upstream failed.
    Stale,
}

impl CacheResult {
    /// The `X-Cache` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Peer => "PEER",
            CacheResult::Stale => "STALE",
        }
    }
}

/// Why a proxied request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The cache failed (or the content is unknown everywhere).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The upstream failed and the cache has nothing to offer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// Starting another download would pass `[server] downloads_per_client`
    /// (or `max_downloads` in total): the client retries later.
    #[error("{0}")]
    TooManyDownloads(&'static str),
    /// The upstream has no referrers API (it answered 404): the client falls
    /// back to the tag schema, as it would there.
    #[error("the upstream does not serve the referrers API")]
    NoReferrersApi,
}

impl ProxyError {
    /// The upstream is down or refusing for now (not: it says the content is absent).
    pub fn is_outage(&self) -> bool {
        use crate::upstream::UpstreamError as U;
        matches!(
            self,
            ProxyError::Upstream(U::Unavailable(_) | U::CircuitOpen(_) | U::TooManyRequests { .. })
        )
    }
}

/// Where a proxied blob's bytes come from.
pub enum BlobBody {
    /// Complete in the cache (the reader holds a use of the digest while it is sent).
    Local(BlobReader),
    /// Arriving: read any range with [`inflight::reader`].
    Streaming(Arc<Download>),
}

/// A proxied blob: its size and where its bytes come from.
pub struct ProxiedBlob {
    /// Full size of the blob.
    pub size: u64,
    /// The body.
    pub body: BlobBody,
    /// Hit or miss.
    pub cache: CacheResult,
}

/// The pull-through engine. Cheap to clone (every [`Source`] holds one).
#[derive(Clone)]
pub struct Proxy {
    store: Arc<Store>,
    upstreams: Arc<Upstreams>,
    peers: Arc<Peers>,
    inflight: Arc<Inflight>,
    metrics: Arc<Metrics>,
    manifest_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    downloads: Arc<ClientSlots>,
    refresh: Arc<gauges::Refresh>,
}

/// How a tag lookup treats the cache and the upstream.
#[derive(Debug, Clone, Copy)]
struct TagCheck {
    /// A tag confirmed within the TTL is served without asking.
    ttl: bool,
    /// A tag that moved to content not stored here is fetched.
    fetch: bool,
}

impl TagCheck {
    /// What a client's pull does.
    const CLIENT: TagCheck = TagCheck {
        ttl: true,
        fetch: true,
    };
}

/// What a tag lookup found.
#[derive(Debug, Clone)]
pub enum TagAnswer {
    /// The tag's manifest, stored here, and where it came from.
    Served(ManifestInfo, CacheResult),
    /// The tag moved upstream to this manifest, not stored here and not
    /// fetched (the caller asked for a HEAD only).
    Moved(Digest),
}

impl TagAnswer {
    /// The served manifest; a move not fetched is unknown here.
    fn served(self, reference: &Reference) -> Result<(ManifestInfo, CacheResult), ProxyError> {
        match self {
            TagAnswer::Served(info, c) => Ok((info, c)),
            TagAnswer::Moved(_) => Err(not_found_manifest(reference)),
        }
    }
}

/// Whether a cached tag is served without asking the upstream: its manifest
/// is here and it was confirmed less than `ttl` seconds ago.
fn is_fresh(c: &Option<crate::store::CachedTag>, ttl: u64) -> bool {
    c.as_ref().is_some_and(|c| {
        c.manifest_present && crate::store::unix_now() < c.checked.saturating_add(ttl)
    })
}

fn not_found_manifest(reference: &Reference) -> ProxyError {
    ProxyError::Store(StoreError::ManifestUnknown(reference.to_string()))
}

impl Proxy {
    /// Builds the engine.
    pub fn new(
        store: Arc<Store>,
        upstreams: Arc<Upstreams>,
        peers: Arc<Peers>,
        metrics: Arc<Metrics>,
        downloads: Arc<ClientSlots>,
    ) -> Proxy {
        Proxy {
            store,
            upstreams,
            peers,
            inflight: Arc::new(Inflight::default()),
            metrics,
            manifest_locks: Default::default(),
            downloads,
            refresh: Default::default(),
        }
    }

    fn upstream(&self, i: usize) -> Result<&Arc<Upstream>, ProxyError> {
        self.upstreams.get(i).ok_or_else(|| {
            ProxyError::Upstream(UpstreamError::Invalid(format!("no upstream #{i}")))
        })
    }

    /// Serializes misses of one manifest reference so concurrent requests make
    /// one upstream call; the followers then find it cached.
    fn manifest_lock(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut locks) = self.manifest_locks.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key).or_default().clone()
    }

    /// Resolves a manifest of a mirrored repository: `local` is the canonical
    /// local name, `remote` the name at upstream `upstream`.
    pub async fn manifest(
        &self,
        upstream: usize,
        local: &RepoName,
        remote: &RepoName,
        reference: &Reference,
    ) -> Result<(ManifestInfo, CacheResult), ProxyError> {
        let up = self.upstream(upstream)?;
        // The hot path: a manifest by digest, or a tag within its TTL, held
        // here: no upstream call, so nothing but the hit to record.
        if let Some(info) = self.manifest_held(up, local, reference).await? {
            self.metrics
                .observe_cache("manifest", CacheResult::Hit.as_str());
            return Ok((info, CacheResult::Hit));
        }
        // Boxed: the upstream calls make this future large, and the hot path
        // above should not carry (and move) it.
        let result = Box::pin(async {
            match reference {
                Reference::Digest(d) => self.manifest_by_digest(up, local, remote, d).await,
                Reference::Tag(t) => self
                    .manifest_by_tag(up, local, remote, t, TagCheck::CLIENT)
                    .await
                    .and_then(|a| a.served(reference)),
            }
        })
        .await;
        if let Ok((_, c)) = &result {
            self.metrics.observe_cache("manifest", c.as_str());
        }
        if let Some(r) = up.ratelimit_remaining() {
            self.metrics.set_upstream_ratelimit(&up.name, r);
        }
        result
    }

    /// The manifest if it is answered locally without asking the upstream:
    /// by digest once stored, by tag while fresh. `None` leaves it to the
    /// full policy (which checks again under its lock).
    async fn manifest_held(
        &self,
        up: &Upstream,
        local: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestInfo>, ProxyError> {
        match reference {
            Reference::Digest(_) => Ok(self.store.manifest_info(local, reference).await.ok()),
            Reference::Tag(t) => {
                let cached = self.store.cached_tag(local, t).await?;
                if !is_fresh(&cached, up.manifest_ttl.as_secs()) {
                    return Ok(None);
                }
                Ok(Some(self.store.manifest_info(local, reference).await?))
            }
        }
    }

    async fn manifest_by_digest(
        &self,
        up: &Upstream,
        local: &RepoName,
        remote: &RepoName,
        digest: &Digest,
    ) -> Result<(ManifestInfo, CacheResult), ProxyError> {
        let reference = Reference::Digest(digest.clone());
        if let Ok(info) = self.store.manifest_info(local, &reference).await {
            return Ok((info, CacheResult::Hit));
        }
        // Started before the lock: waiting behind another request's call is
        // part of what this client waits.
        let deadline = Deadline::for_call();
        let lock = self.manifest_lock(format!("{local}@{digest}"));
        let _guard = lock.lock().await;
        if let Ok(info) = self.store.manifest_info(local, &reference).await {
            return Ok((info, CacheResult::Hit));
        }
        let m = match up
            .manifest(remote.as_str(), &digest.to_string(), false, deadline)
            .await
        {
            Err(UpstreamError::NotFound(_)) => return Err(not_found_manifest(&reference)),
            other => other?,
        };
        let body = m.body.unwrap_or_default();
        self.store
            .put_cached_manifest(local, None, &m.digest, &m.media_type, body, &up.name)
            .await?;
        Ok((
            self.store.manifest_info(local, &reference).await?,
            CacheResult::Miss,
        ))
    }

    /// A tag by the policy: trusted within the TTL (unless `check.ttl` is
    /// off: a forced revalidation), then a HEAD, and a GET by digest when it
    /// moved to content not stored here (unless `check.fetch` is off: then
    /// the answer says where it moved).
    async fn manifest_by_tag(
        &self,
        up: &Upstream,
        local: &RepoName,
        remote: &RepoName,
        tag: &crate::oci::Tag,
        check: TagCheck,
    ) -> Result<TagAnswer, ProxyError> {
        let reference = Reference::Tag(tag.clone());
        let ttl = up.manifest_ttl.as_secs();
        let fresh = |c: &Option<crate::store::CachedTag>| check.ttl && is_fresh(c, ttl);
        let cached = self.store.cached_tag(local, tag).await?;
        if fresh(&cached) {
            return Ok(TagAnswer::Served(
                self.store.manifest_info(local, &reference).await?,
                CacheResult::Hit,
            ));
        }
        // One budget for everything this request asks the upstream (HEAD,
        // then maybe GET), started before the lock: waiting behind another
        // request's call is part of what this client waits.
        let deadline = Deadline::for_call();
        let lock = self.manifest_lock(format!("{local}:{tag}"));
        let _guard = lock.lock().await;
        let cached = self.store.cached_tag(local, tag).await?;
        if fresh(&cached) {
            return Ok(TagAnswer::Served(
                self.store.manifest_info(local, &reference).await?,
                CacheResult::Hit,
            ));
        }
        let stale = cached.as_ref().filter(|c| c.manifest_present);
        // A forced revalidation wants the upstream's answer: its failure is
        // the caller's to report, never hidden behind the cached tag.
        let serve_stale = async |e: UpstreamError| match stale.filter(|_| check.ttl) {
            Some(_) => {
                tracing::warn!(repo = %local, %tag, error = %e, "upstream failed; serving the cached tag past its TTL");
                self.metrics.observe_cache("manifest", "STALE");
                Ok(TagAnswer::Served(
                    self.store.manifest_info(local, &reference).await?,
                    CacheResult::Stale,
                ))
            }
            None => Err(e.into()),
        };
        let head = match up
            .manifest(remote.as_str(), tag.as_str(), true, deadline)
            .await
        {
            Ok(h) => h,
            Err(UpstreamError::NotFound(_)) => return Err(not_found_manifest(&reference)),
            Err(e) => return serve_stale(e).await,
        };
        if self.store.has_manifest(local, &head.digest).await? {
            // Unchanged (or moved to content we already have): no GET needed.
            let unchanged = stale.is_some_and(|c| c.digest == head.digest);
            self.store.confirm_tag(local, tag, &head.digest).await?;
            let info = self.store.manifest_info(local, &reference).await?;
            return Ok(TagAnswer::Served(
                info,
                if unchanged {
                    CacheResult::Hit
                } else {
                    CacheResult::Miss
                },
            ));
        }
        if !check.fetch && head.body.is_none() {
            return Ok(TagAnswer::Moved(head.digest));
        }
        let m = if head.body.is_some() {
            // The upstream sent no digest on HEAD, so the manifest was fetched
            // and hashed already: those bytes are the ones to keep.
            head
        } else {
            // Fetch by digest, so a tag moving again in between cannot mix content.
            match up
                .manifest(remote.as_str(), &head.digest.to_string(), false, deadline)
                .await
            {
                Ok(m) => m,
                Err(UpstreamError::NotFound(_)) => return Err(not_found_manifest(&reference)),
                Err(e) => return serve_stale(e).await,
            }
        };
        let body = m.body.unwrap_or_default();
        self.store
            .put_cached_manifest(local, Some(tag), &m.digest, &m.media_type, body, &up.name)
            .await?;
        Ok(TagAnswer::Served(
            self.store.manifest_info(local, &reference).await?,
            CacheResult::Miss,
        ))
    }

    /// Revalidates a mirrored tag now, whatever its TTL (the sync worker):
    /// one HEAD, and when the tag moved to content not stored here, a GET by
    /// digest if `fetch` (otherwise the answer says where it moved). Upstream
    /// failures are returned, never answered with the cached tag.
    pub async fn revalidate_tag(
        &self,
        upstream: usize,
        local: &RepoName,
        remote: &RepoName,
        tag: &crate::oci::Tag,
        fetch: bool,
    ) -> Result<TagAnswer, ProxyError> {
        let up = self.upstream(upstream)?;
        let check = TagCheck { ttl: false, fetch };
        let result = Box::pin(self.manifest_by_tag(up, local, remote, tag, check)).await;
        if let Some(r) = up.ratelimit_remaining() {
            self.metrics.set_upstream_ratelimit(&up.name, r);
        }
        result
    }

    /// The upstream's tags of `remote` (the query passed through), with its
    /// `Link` to the next page.
    pub async fn tags(
        &self,
        upstream: usize,
        remote: &RepoName,
        query: &str,
    ) -> Result<(Vec<String>, Option<String>), ProxyError> {
        Ok(self
            .upstream(upstream)?
            .tags(remote.as_str(), query, Deadline::for_call())
            .await?)
    }

    /// The upstream's referrers of `digest` in a mirrored repository.
    pub async fn referrers(
        &self,
        upstream: usize,
        remote: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<crate::oci::manifest::Descriptor>, ProxyError> {
        Ok(self
            .upstream(upstream)?
            .referrers(remote.as_str(), digest, artifact_type, Deadline::for_call())
            .await?)
    }

    /// A blob of a mirrored repository: from the cache, or through the one
    /// download of its digest (started if none is running). A download goes on
    /// after its client leaves, so starting one takes one of `client`'s
    /// download slots until it ends; joining a running one is free.
    pub async fn blob(
        &self,
        upstream: usize,
        local: &RepoName,
        remote: &RepoName,
        digest: &Digest,
        client: IpAddr,
    ) -> Result<ProxiedBlob, ProxyError> {
        if let Ok((reader, size)) = self.store.open_blob(local, digest).await {
            self.metrics.observe_cache("blob", "HIT");
            return Ok(ProxiedBlob {
                size,
                body: BlobBody::Local(reader),
                cache: CacheResult::Hit,
            });
        }
        let up = self.upstream(upstream)?.clone();
        let slot = match self.inflight.get(local.as_str(), digest) {
            Some(_) => None,
            None => Some(self.downloads.acquire(client).map_err(|full| {
                ProxyError::TooManyDownloads(match full {
                    Full::Client => {
                        "this address has started too many downloads that are still running ([server] downloads_per_client); retry shortly"
                    }
                    Full::Total => {
                        "too many downloads are running ([server] max_downloads); retry shortly"
                    }
                })
            })?),
        };
        let (dl, starter) = self.inflight.join_or_start(local.as_str(), digest);
        let started_here = starter.is_some();
        if let Some(publisher) = starter {
            let task = DownloadTask {
                _slot: slot,
                peers: self.peers.clone(),
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                upstream: up,
                local: local.clone(),
                remote: remote.clone(),
                digest: digest.clone(),
                download: dl.clone(),
            };
            tokio::spawn(task.run(publisher));
        }
        let (size, feed) = wait_for_size(&dl).await?;
        // The request that started a download is a miss (or peer) however fast
        // the download went; one that joined a verified download is a hit.
        let cache = match (started_here, feed) {
            (_, _) if dl.found_stored() => CacheResult::Hit,
            (true, Feed::Peer) => CacheResult::Peer,
            (true, _) => CacheResult::Miss,
            (false, s) => s.for_joiner(),
        };
        self.metrics.observe_cache("blob", cache.as_str());
        match size {
            Some(size) => Ok(ProxiedBlob {
                size,
                body: BlobBody::Streaming(dl),
                cache,
            }),
            None => {
                // The source did not say how long it is: serve once stored.
                let (reader, size) = self.store.open_blob(local, digest).await?;
                Ok(ProxiedBlob {
                    size,
                    body: BlobBody::Local(reader),
                    cache,
                })
            }
        }
    }

    /// The size of a blob of a mirrored repository for a HEAD: from the cache,
    /// from a download in flight, from the bucket shared with other nodes, or
    /// from a HEAD to the upstream. A HEAD never
    /// starts a download (a client that only checks for a blob must not cost
    /// the upstream its bytes).
    pub async fn blob_head(
        &self,
        upstream: usize,
        local: &RepoName,
        remote: &RepoName,
        digest: &Digest,
    ) -> Result<(u64, CacheResult), ProxyError> {
        if let Some(size) = self.store.blob_size(local, digest).await? {
            self.metrics.observe_cache("blob", "HIT");
            return Ok((size, CacheResult::Hit));
        }
        if let Some(dl) = self.inflight.get(local.as_str(), digest) {
            let (size, feed) = wait_for_size(&dl).await?;
            let cache = feed.for_joiner();
            let size = match size {
                Some(s) => s,
                None => self
                    .store
                    .blob_size(local, digest)
                    .await?
                    .ok_or_else(|| StoreError::BlobUnknown(digest.clone()))?,
            };
            self.metrics.observe_cache("blob", cache.as_str());
            return Ok((size, cache));
        }
        // Another node sharing the bucket may have stored it.
        if let Some(size) = self
            .store
            .adopt_from_bucket(local, digest, Origin::Cached)
            .await?
        {
            self.metrics.observe_cache("blob", "HIT");
            return Ok((size, CacheResult::Hit));
        }
        let size = match self
            .upstream(upstream)?
            .blob_size(remote.as_str(), digest, Deadline::for_call())
            .await
        {
            Ok(size) => size,
            Err(UpstreamError::NotFound(_)) => {
                return Err(StoreError::BlobUnknown(digest.clone()).into());
            }
            Err(e) => return Err(e.into()),
        };
        self.metrics.observe_cache("blob", "MISS");
        Ok((size, CacheResult::Miss))
    }
}

/// Where a download's bytes stand when a request attaches to it.
#[derive(Debug, Clone, Copy)]
enum Feed {
    /// Still arriving from the upstream.
    Upstream,
    /// Arriving (or arrived) from a LAN peer.
    Peer,
    /// Verified or stored already.
    Settled,
}

impl Feed {
    /// What a request that joined a download it did not start was served.
    fn for_joiner(self) -> CacheResult {
        match self {
            Feed::Upstream => CacheResult::Miss,
            Feed::Peer => CacheResult::Peer,
            Feed::Settled => CacheResult::Hit,
        }
    }
}

/// Waits until a download knows its size (Some), finished without announcing one
/// (None), or failed; also says where the bytes come from: the upstream, a
/// peer, or (once verified) as good as the cache.
async fn wait_for_size(dl: &Download) -> Result<(Option<u64>, Feed), ProxyError> {
    let mut rx = dl.watch();
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            DlState::Connecting | DlState::Streaming { size: None, .. } => {}
            DlState::Streaming {
                size: Some(s),
                peer,
                ..
            } => {
                let feed = if peer { Feed::Peer } else { Feed::Upstream };
                return Ok((Some(s), feed));
            }
            // Verified bytes are as good as cached ones.
            DlState::Verified {
                size: s,
                peer: true,
            } => return Ok((Some(s), Feed::Peer)),
            DlState::Verified { size: s, .. } => return Ok((Some(s), Feed::Settled)),
            DlState::Done { .. } => return Ok((None, Feed::Settled)),
            DlState::Failed(DownloadError::Upstream(UpstreamError::NotFound(_))) => {
                return Err(ProxyError::Store(StoreError::BlobUnknown(
                    dl.digest.clone(),
                )));
            }
            DlState::Failed(e) => return Err(e.into()),
        }
        if rx.changed().await.is_err()
            && !matches!(*rx.borrow(), DlState::Done { .. } | DlState::Failed(_))
        {
            return Err(DownloadError::Corrupt("download ended without a result".into()).into());
        }
    }
}

struct DownloadTask {
    /// The starting client's download slot, held until the download ends.
    _slot: Option<SlotGuard>,
    peers: Arc<Peers>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    upstream: Arc<Upstream>,
    local: RepoName,
    remote: RepoName,
    digest: Digest,
    download: Arc<Download>,
}

impl DownloadTask {
    /// Runs the download to its end. `publisher` is held for the whole run:
    /// whatever ends it (a panic too), the entry is forgotten and the readers
    /// get a final state.
    async fn run(self, publisher: Publisher) {
        // In use from the first byte until the last reader is done.
        self.download
            .hold_in_use(self.store.hold_in_use(&self.digest));
        match self.fetch(publisher.state()).await {
            Ok(size) => publisher.settle(DlState::Done { size }),
            Err(e) => {
                tracing::warn!(digest = %self.digest, repo = %self.local, error = %e, "blob download failed; nothing kept");
                self.metrics.observe_download_failure(&self.upstream.name);
                publisher.settle(DlState::Failed(e));
            }
        }
    }

    /// The stored blob first, then (on a shared bucket) what another node
    /// stored or is filling, then peers and the upstream under the blob's
    /// fill lease (`fill.rs`).
    async fn fetch(&self, tx: &tokio::sync::watch::Sender<DlState>) -> Result<u64, DownloadError> {
        // A request may have missed the store just before an earlier download
        // recorded this blob, and registered after it finished: serve what is
        // stored rather than download it again.
        if let Ok((reader, size)) = self.store.open_blob(&self.local, &self.digest).await {
            self.download.set_reader(reader);
            self.download.set_found_stored();
            return Ok(size);
        }
        let lease = match fill::claim(&self.store, &self.local, &self.digest).await? {
            fill::Fill::Adopted(size) => {
                // Another node's fill: nothing crossed the upstream link.
                let (reader, _) = self.store.open_blob(&self.local, &self.digest).await?;
                self.download.set_reader(reader);
                self.download.set_found_stored();
                return Ok(size);
            }
            fill::Fill::Download(lease) => lease,
        };
        let Some(mut lease) = lease else {
            return self.download_now(tx).await;
        };
        let result = tokio::select! {
            r = self.download_now(tx) => r,
            () = fill::keep_renewed(&mut lease, &self.digest) => {
                Err(DownloadError::Corrupt("the fill lease's renewal ended".into()))
            }
        };
        // Stored (and so in the bucket) or failed: either way the others go on.
        fill::release(lease, &self.digest).await;
        result
    }

    /// Peers first (before any byte is published, so a peer that fails to
    /// answer costs nothing), then the upstream.
    async fn download_now(
        &self,
        tx: &tokio::sync::watch::Sender<DlState>,
    ) -> Result<u64, DownloadError> {
        if !self.peers.is_empty() {
            if let Some((peer, resp)) = self.peers.fetch(self.local.as_str(), &self.digest).await {
                tracing::debug!(digest = %self.digest, %peer, "fetching from a LAN peer");
                let result = self.stream(resp, tx, Some(&peer)).await;
                if matches!(result, Err(DownloadError::Corrupt(_))) {
                    self.peers.distrust(&peer);
                }
                return result;
            }
        }
        let resp = self
            .upstream
            .blob(self.remote.as_str(), &self.digest, Deadline::for_call())
            .await?;
        self.stream(resp, tx, None).await
    }

    /// Upstream and peer traffic, counted in batches (a label lookup per
    /// network chunk would cost more than the chunk).
    fn count_bytes(&self, peer: Option<&str>, n: u64) {
        match peer {
            Some(p) => self.metrics.upstreams.peer_bytes(p, n),
            None if n > 0 => self.metrics.observe_upstream_bytes(&self.upstream.name, n),
            None => {}
        }
    }

    async fn stream(
        &self,
        mut resp: reqwest::Response,
        tx: &tokio::sync::watch::Sender<DlState>,
        from_peer: Option<&str>,
    ) -> Result<u64, DownloadError> {
        let peer = from_peer.is_some();
        let size = resp.content_length();
        let mut writer = self.store.new_writer().await?;
        self.download.set_reader(writer.reader().await?);
        tx.send_replace(DlState::Streaming {
            size,
            received: 0,
            peer,
        });
        let mut uncounted = 0u64;
        let mut written = 0u64;
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| DownloadError::Upstream(UpstreamError::Unavailable(e.to_string())))?;
            let Some(chunk) = chunk else { break };
            uncounted += chunk.len() as u64;
            if uncounted >= 1 << 20 {
                self.count_bytes(from_peer, std::mem::take(&mut uncounted));
            }
            self.download.arrived(chunk.clone());
            writer.write(chunk).await?;
            if writer.flushed() != written {
                written = writer.flushed();
                self.download.written(written);
            }
            if size.is_some_and(|s| writer.len() > s) {
                return Err(DownloadError::Corrupt(format!(
                    "upstream sent more than the {} bytes it announced",
                    size.unwrap_or(0)
                )));
            }
            let received = writer.len();
            tx.send_if_modified(|s| match s {
                DlState::Streaming { received: r, .. } if *r != received => {
                    *r = received;
                    true
                }
                _ => false,
            });
        }
        writer.sync_pending().await?;
        let total = writer.len();
        if size.is_some_and(|s| s != total) {
            return Err(DownloadError::Corrupt(format!(
                "upstream sent {total} of {} bytes",
                size.unwrap_or(0)
            )));
        }
        self.count_bytes(from_peer, uncounted);
        writer.verify(&self.digest).await.map_err(|e| match e {
            StoreError::DigestMismatch { expected, actual } => {
                DownloadError::Corrupt(format!("upstream bytes hash to {actual}, not {expected}"))
            }
            other => other.into(),
        })?;
        // Verified: readers may have the last bytes now; making the file durable
        // and indexing it need not hold them up.
        tx.send_replace(DlState::Verified { size: total, peer });
        let (_, n) = self
            .store
            .store_blob(writer, &self.local, &self.digest, Origin::Cached)
            .await?;
        Ok(n)
    }
}
