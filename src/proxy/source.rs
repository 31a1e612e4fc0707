//! [`Source`]: where one request's repository is answered from, decided once
//! when its name is routed. Hosted names (and mirrored ones that must not ask
//! the upstream: a peer's request, a pusher's blob check) are answered by the
//! local store; mirrored names by the pull-through policy ([`Proxy`]: cache,
//! TTL, stale-on-error, 404s). Handlers call the same methods either way and
//! never branch on which it is. Writes (uploads, manifest PUT, deletes) are
//! not here: they are hosted-only and go to the store.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::{BlobBody, CacheResult, Proxy, ProxyError};
use crate::oci::manifest::Descriptor;
use crate::oci::{Digest, Reference, RepoName};
use crate::store::{ManifestInfo, StoreError};

/// No listing page is longer than this, whatever `n` asks for; a tag list
/// without `n` is one page of this many (with a next page when more follow).
pub const PAGE_MAX: usize = 10_000;

/// Where a request's repository is answered from.
#[derive(Clone)]
pub struct Source {
    /// Shared, not cloned: a clone of the engine is seven reference counts
    /// to bump per request.
    proxy: Arc<Proxy>,
    /// The local name (what the store knows it as).
    local: RepoName,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// The local store only.
    Hosted,
    /// The cache in front of an upstream.
    Mirror {
        /// Index into the configured upstreams.
        upstream: usize,
        /// The repository name at the upstream.
        remote: RepoName,
        /// The name the client used (answers that list names repeat it).
        requested: RepoName,
    },
}

/// A blob to send: its size, its bytes, and for a mirrored name where they
/// came from.
pub struct Blob {
    /// Full size of the blob.
    pub size: u64,
    /// The body.
    pub body: BlobBody,
    /// Hit, miss, peer (mirrored names only; sent as `X-Cache`).
    pub cache: Option<CacheResult>,
}

/// One page of a repository's tags.
pub struct TagList {
    /// The name the answer repeats (the one the client used).
    pub name: RepoName,
    /// The tags.
    pub tags: Vec<String>,
    /// Where the next page is, if any.
    pub next: NextPage,
    /// For a mirrored name: `MISS` (the upstream answered) or `STALE` (it
    /// failed and the cached tags answered).
    pub cache: Option<CacheResult>,
}

/// The next page of a listing.
pub enum NextPage {
    /// This was the last page.
    None,
    /// More follow after `last`, in pages of `n`.
    After {
        /// Page size.
        n: usize,
        /// The last entry of this page.
        last: String,
    },
    /// The upstream's `Link` value, its paths renamed to the requested name.
    Link(String),
}

/// Percent-encodes a query value (tags and names are safe, but `last` and
/// `ns` come from the client); `/` stays as it is.
pub fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Proxy {
    /// A source answering `local` from the store only.
    pub fn hosted(self: &Arc<Self>, local: RepoName) -> Source {
        Source {
            proxy: self.clone(),
            local,
            kind: Kind::Hosted,
        }
    }

    /// A source answering the mirrored `local` through upstream `upstream`
    /// (where it is `remote`); `requested` is the name the client used.
    pub fn mirror(
        self: &Arc<Self>,
        local: RepoName,
        upstream: usize,
        remote: RepoName,
        requested: RepoName,
    ) -> Source {
        Source {
            proxy: self.clone(),
            local,
            kind: Kind::Mirror {
                upstream,
                remote,
                requested,
            },
        }
    }
}

impl Source {
    /// The local name.
    pub fn local(&self) -> &RepoName {
        &self.local
    }

    /// A blob's bytes (`GET`): a mirror miss streams while it downloads, and
    /// starting a download takes one of `client`'s download slots.
    pub async fn blob(&self, digest: &Digest, client: IpAddr) -> Result<Blob, ProxyError> {
        match &self.kind {
            Kind::Hosted => {
                let (reader, size) = self
                    .proxy
                    .store
                    .open_hosted_blob(&self.local, digest)
                    .await?;
                Ok(Blob {
                    size,
                    body: BlobBody::Local(reader),
                    cache: None,
                })
            }
            Kind::Mirror {
                upstream, remote, ..
            } => {
                let b = self
                    .proxy
                    .blob(*upstream, &self.local, remote, digest, client)
                    .await?;
                Ok(Blob {
                    size: b.size,
                    body: b.body,
                    cache: Some(b.cache),
                })
            }
        }
    }

    /// A blob's size (`HEAD`); a mirror asks the upstream without downloading.
    pub async fn blob_head(
        &self,
        digest: &Digest,
    ) -> Result<(u64, Option<CacheResult>), ProxyError> {
        match &self.kind {
            Kind::Hosted => {
                let size = self
                    .proxy
                    .store
                    .hosted_blob_size(&self.local, digest)
                    .await?
                    .ok_or_else(|| StoreError::BlobUnknown(digest.clone()))?;
                Ok((size, None))
            }
            Kind::Mirror {
                upstream, remote, ..
            } => {
                let (size, cache) = self
                    .proxy
                    .blob_head(*upstream, &self.local, remote, digest)
                    .await?;
                Ok((size, Some(cache)))
            }
        }
    }

    /// A manifest by tag or digest (`GET`/`HEAD`); a mirror applies its TTL
    /// and serves stale when the upstream fails.
    pub async fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<(ManifestInfo, Option<CacheResult>), ProxyError> {
        match &self.kind {
            Kind::Hosted => Ok((
                self.proxy
                    .store
                    .hosted_manifest_info(&self.local, reference)
                    .await?,
                None,
            )),
            Kind::Mirror {
                upstream, remote, ..
            } => {
                let (info, cache) = self
                    .proxy
                    .manifest(*upstream, &self.local, remote, reference)
                    .await?;
                Ok((info, Some(cache)))
            }
        }
    }

    /// The bytes of a manifest [`Source::manifest`] found (stored either way).
    pub async fn manifest_bytes(&self, info: &ManifestInfo) -> Result<Bytes, ProxyError> {
        Ok(self.proxy.store.manifest_bytes(info).await?)
    }

    /// One page of tags: `n` (None when the client gave none; at most
    /// [`PAGE_MAX`]) after `last`. A mirror lists the upstream's tags and falls
    /// back to the cached ones when the upstream fails (not when it says the
    /// repository does not exist).
    pub async fn tags(
        &self,
        n: Option<usize>,
        last: Option<String>,
    ) -> Result<TagList, ProxyError> {
        let store = &self.proxy.store;
        let Kind::Mirror {
            upstream,
            remote,
            requested,
        } = &self.kind
        else {
            let n = n.unwrap_or(PAGE_MAX);
            let page = store.tags(&self.local, Some(n), last).await?;
            let next = match (page.more, page.items.last()) {
                (true, Some(last)) => NextPage::After {
                    n,
                    last: last.clone(),
                },
                _ => NextPage::None,
            };
            return Ok(TagList {
                name: self.local.clone(),
                tags: page.items,
                next,
                cache: None,
            });
        };
        // Only the paging parameters travel upstream, `n` capped like ours.
        let mut q = Vec::new();
        if let Some(n) = n {
            q.push(format!("n={n}"));
        }
        if let Some(l) = &last {
            q.push(format!("last={}", query_value(l)));
        }
        let q = q.join("&");
        match self.proxy.tags(*upstream, remote, &q).await {
            Ok((tags, link)) => Ok(TagList {
                name: requested.clone(),
                tags,
                next: match link {
                    Some(l) => NextPage::Link(
                        l.replace(&format!("/v2/{remote}/"), &format!("/v2/{requested}/")),
                    ),
                    None => NextPage::None,
                },
                cache: Some(CacheResult::Miss),
            }),
            Err(ProxyError::Upstream(crate::upstream::UpstreamError::NotFound(_))) => {
                Err(StoreError::NameUnknown(requested.clone()).into())
            }
            Err(e) => {
                tracing::warn!(repo = %self.local, error = %e, "upstream tag list failed; answering from the cache");
                let page = match store
                    .tags(&self.local, Some(n.unwrap_or(PAGE_MAX)), last)
                    .await
                {
                    Ok(page) => page,
                    Err(_) => return Err(e),
                };
                Ok(TagList {
                    name: requested.clone(),
                    tags: page.items,
                    next: NextPage::None,
                    cache: Some(CacheResult::Stale),
                })
            }
        }
    }

    /// The manifests whose subject is `digest`, filtered by artifact type. A
    /// mirror asks the upstream (signatures and attestations live there, not in
    /// the cache) and falls back to the cached referrers when it fails; an
    /// upstream without the API is [`ProxyError::NoReferrersApi`], so clients
    /// fall back to the tag schema as they would there.
    pub async fn referrers(
        &self,
        digest: &Digest,
        artifact_type: Option<String>,
    ) -> Result<(Vec<Descriptor>, Option<CacheResult>), ProxyError> {
        let store = &self.proxy.store;
        let Kind::Mirror {
            upstream, remote, ..
        } = &self.kind
        else {
            store.follow_referrers(&self.local, digest).await;
            let manifests = store.referrers(&self.local, digest, artifact_type).await?;
            return Ok((manifests, None));
        };
        match self
            .proxy
            .referrers(*upstream, remote, digest, artifact_type.as_deref())
            .await
        {
            Ok(manifests) => Ok((manifests, Some(CacheResult::Miss))),
            Err(ProxyError::Upstream(crate::upstream::UpstreamError::NotFound(_))) => {
                Err(ProxyError::NoReferrersApi)
            }
            Err(e) => {
                tracing::warn!(repo = %self.local, error = %e, "upstream referrers failed; answering from the cache");
                match store.referrers(&self.local, digest, artifact_type).await {
                    Ok(manifests) => Ok((manifests, Some(CacheResult::Stale))),
                    Err(_) => Err(e),
                }
            }
        }
    }
}
