//! Calls to one upstream registry: manifests (GET/HEAD) and blobs, following
//! its auth challenge, within its rate limit, retried with backoff on connect
//! errors, 5xx and 429 (honouring `Retry-After`), behind its circuit breaker,
//! and never past the caller's [`Deadline`] (see `deadline`).
//! Credentials go only to the upstream host: reqwest drops `Authorization` on a
//! redirect to another host (Docker Hub sends blobs to a CDN).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use backon::Retryable;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, Method, StatusCode, header};

use super::breaker::Breaker;
use super::deadline::{Deadline, MIN_ATTEMPT, exchange, guarded, next_wait};
pub use super::error::UpstreamError;
use super::response::{read_capped, retry_after, transport};
use super::token::{self, Challenge, TokenCache};
use crate::oci::Digest;
use crate::oci::Reference;
use crate::oci::manifest::{Descriptor, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST};

/// A manifest as the upstream describes it (and its bytes, for a GET).
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    /// Digest of the bytes (from `Docker-Content-Digest`, verified for GETs).
    pub digest: Digest,
    /// Content-Type.
    pub media_type: String,
    /// Bytes: for a GET, and for a HEAD the upstream answered without a
    /// `Docker-Content-Digest` (then the manifest was fetched to hash it).
    pub body: Option<Bytes>,
}

/// Everything a manifest request accepts, on one header line: never ask the
/// upstream to convert.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// How to reach one upstream.
pub struct UpstreamSettings {
    /// Name as clients write it (`docker.io`).
    pub name: String,
    /// Base URL of its v2 API.
    pub url: String,
    /// Username and password, if configured.
    pub credentials: Option<(String, String)>,
    /// Request rate limit.
    pub requests_per_second: Option<u32>,
    /// How long a tag is trusted.
    pub manifest_ttl: Duration,
}

/// One upstream registry.
pub struct Upstream {
    /// Name as clients write it.
    pub name: String,
    /// How long a tag is trusted before revalidation.
    pub manifest_ttl: Duration,
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
    tokens: TokenCache,
    limiter: Option<DefaultDirectRateLimiter>,
    breaker: Breaker,
    ratelimit_remaining: AtomicI64,
    calls: super::stats::CallStats,
}

/// Largest tag list accepted from an upstream.
const MAX_TAG_LIST_BYTES: u64 = 16 << 20;

/// Connect timeout for upstream calls.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while reading an upstream response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One request to the upstream, as the retry loop repeats it.
struct Req<'a> {
    method: Method,
    path: String,
    accept: Option<&'a str>,
    repo: &'a str,
}

impl<'a> Req<'a> {
    fn get(path: String, accept: Option<&'a str>, repo: &'a str) -> Self {
        Req {
            method: Method::GET,
            path,
            accept,
            repo,
        }
    }

    fn head(path: String, accept: Option<&'a str>, repo: &'a str) -> Self {
        Req {
            method: Method::HEAD,
            ..Req::get(path, accept, repo)
        }
    }
}

impl Upstream {
    /// Builds the client for one upstream.
    pub fn new(s: UpstreamSettings) -> Result<Upstream, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        let limiter = s
            .requests_per_second
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        Ok(Upstream {
            name: s.name,
            manifest_ttl: s.manifest_ttl,
            base: s.url.trim_end_matches('/').to_owned(),
            http,
            credentials: s.credentials,
            tokens: TokenCache::default(),
            limiter,
            breaker: Breaker::default(),
            ratelimit_remaining: AtomicI64::new(-1),
            calls: Default::default(),
        })
    }

    /// Docker Hub's `ratelimit-remaining` from the last response, if it sent one.
    pub fn ratelimit_remaining(&self) -> Option<i64> {
        let v = self.ratelimit_remaining.load(Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    /// Calls made to this upstream, by outcome (for `/metrics`).
    pub fn calls(&self) -> &super::stats::CallStats {
        &self.calls
    }

    /// Whether the circuit breaker is skipping this upstream.
    pub fn is_skipped(&self) -> bool {
        self.breaker.is_open()
    }

    /// GET (with body) or HEAD a manifest, within `deadline`. A HEAD the
    /// upstream answers without `Docker-Content-Digest` (the header is
    /// optional) falls back to a GET whose bytes are hashed; the body then
    /// comes back too, so the caller need not fetch it again.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
        deadline: Deadline,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        if head {
            let resp = self
                .headers(
                    Req::head(path.clone(), Some(MANIFEST_ACCEPT), repo),
                    deadline,
                )
                .await?;
            if let Some(digest) = announced_digest(resp.headers())? {
                return Ok(UpstreamManifest {
                    digest,
                    media_type: content_type(resp.headers()),
                    body: None,
                });
            }
            tracing::debug!(upstream = %self.name, repo, reference, "HEAD without Docker-Content-Digest; fetching the manifest to hash it");
        }
        let (headers, body) = self
            .small(
                Req::get(path, Some(MANIFEST_ACCEPT), repo),
                deadline,
                MAX_MANIFEST_BYTES as u64,
                "manifest",
            )
            .await?;
        let digest = Digest::of_bytes(&body);
        if let Some(a) = announced_digest(&headers)? {
            if a != digest {
                return Err(UpstreamError::Invalid(format!(
                    "manifest bytes hash to {digest} but the upstream said {a}"
                )));
            }
        }
        if let Ok(Reference::Digest(d)) = reference.parse::<Reference>() {
            if d != digest {
                return Err(UpstreamError::Invalid(format!(
                    "asked for {d}, got bytes of {digest}"
                )));
            }
        }
        let media_type = content_type(&headers);
        let media_type = if media_type.is_empty()
            || !crate::oci::manifest::is_manifest_media_type(&media_type)
        {
            sniff_media_type(&body).unwrap_or(media_type)
        } else {
            media_type
        };
        Ok(UpstreamManifest {
            digest,
            media_type,
            body: Some(body),
        })
    }

    /// Starts a blob download: the response headers arrive within
    /// `deadline`; the caller streams and verifies the body (a big blob may
    /// take minutes; each read has [`READ_TIMEOUT`]).
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
        deadline: Deadline,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.headers(
            Req::get(format!("/v2/{repo}/blobs/{digest}"), None, repo),
            deadline,
        )
        .await
    }

    /// The size of a blob, from a HEAD: what a client's HEAD of a blob that is
    /// not cached needs, without downloading it.
    pub async fn blob_size(
        &self,
        repo: &str,
        digest: &Digest,
        deadline: Deadline,
    ) -> Result<u64, UpstreamError> {
        let resp = self
            .headers(
                Req::head(format!("/v2/{repo}/blobs/{digest}"), None, repo),
                deadline,
            )
            .await?;
        resp.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| UpstreamError::Invalid("blob HEAD without a Content-Length".into()))
    }

    /// The upstream's tag list of `repo`, with the query (`n`, `last`) passed
    /// through: the tags and the upstream's `Link` to the next page.
    pub async fn tags(
        &self,
        repo: &str,
        query: &str,
        deadline: Deadline,
    ) -> Result<(Vec<String>, Option<String>), UpstreamError> {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let (headers, body) = self
            .small(
                Req::get(format!("/v2/{repo}/tags/list{q}"), None, repo),
                deadline,
                MAX_TAG_LIST_BYTES,
                "tag list",
            )
            .await?;
        let link = headers
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("tag list: {e}")))?;
        Ok((list.tags.unwrap_or_default(), link))
    }

    /// The upstream's referrers of `digest` (OCI 1.1), filtered by
    /// `artifact_type` here when the upstream did not filter them itself. An
    /// upstream without the referrers API answers 404 (`NotFound`), which
    /// clients take as "use the tag schema".
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        deadline: Deadline,
    ) -> Result<Vec<Descriptor>, UpstreamError> {
        let q = artifact_type
            .map(|t| format!("?artifactType={}", percent_encode(t)))
            .unwrap_or_default();
        let (_, body) = self
            .small(
                Req::get(
                    format!("/v2/{repo}/referrers/{digest}{q}"),
                    Some(OCI_INDEX),
                    repo,
                ),
                deadline,
                MAX_MANIFEST_BYTES as u64,
                "referrers index",
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<Descriptor>,
        }
        let index: Index = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("referrers index: {e}")))?;
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect())
    }

    /// A call answered once its headers are in (blobs, HEADs), behind the
    /// breaker and within `deadline`.
    async fn headers(
        &self,
        req: Req<'_>,
        deadline: Deadline,
    ) -> Result<reqwest::Response, UpstreamError> {
        let throttled = AtomicBool::new(false);
        let call = self.send(&req, deadline, &throttled);
        let result = guarded(&self.breaker, deadline, &throttled, call).await;
        self.calls.record(&result);
        result
    }

    /// A call with a small body (manifest, tag list, index), read whole and
    /// capped at `max`: the body too must arrive within `deadline`.
    async fn small(
        &self,
        req: Req<'_>,
        deadline: Deadline,
        max: u64,
        what: &str,
    ) -> Result<(HeaderMap, Bytes), UpstreamError> {
        let throttled = AtomicBool::new(false);
        let call = async {
            let resp = self.send(&req, deadline, &throttled).await?;
            let headers = resp.headers().clone();
            Ok((headers, read_capped(resp, max, what).await?))
        };
        let result = guarded(&self.breaker, deadline, &throttled, call).await;
        self.calls.record(&result);
        result
    }

    /// Attempts `req` until it has an answer worth returning: retried with
    /// backoff (or a 429's `Retry-After`) while backon allows and the budget
    /// leaves room for another attempt.
    async fn send(
        &self,
        req: &Req<'_>,
        deadline: Deadline,
        throttled: &AtomicBool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}{}", self.base, req.path);
        (|| self.attempt(req, &url, deadline, throttled))
            .retry(Deadline::backoff())
            .when(UpstreamError::retryable)
            .adjust(|e, dur| next_wait(e, dur, deadline.remaining()))
            .await
    }

    fn scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    async fn attempt(
        &self,
        req: &Req<'_>,
        url: &str,
        deadline: Deadline,
        throttled: &AtomicBool,
    ) -> Result<reqwest::Response, UpstreamError> {
        if let Some(l) = &self.limiter {
            // Our own limit: wait for a slot while an attempt can still fit.
            let by = deadline
                .instant()
                .checked_sub(MIN_ATTEMPT)
                .unwrap_or_else(|| deadline.instant());
            if tokio::time::timeout_at(by, l.until_ready()).await.is_err() {
                throttled.store(true, Ordering::Relaxed);
                return Err(UpstreamError::TooManyRequests {
                    retry_after: Some(1),
                });
            }
        }
        let scope = Self::scope(req.repo);
        let send = |auth: Option<Auth>| {
            let mut rb = self.http.request(req.method.clone(), url);
            if let Some(a) = req.accept {
                rb = rb.header(header::ACCEPT, a);
            }
            rb = match auth {
                Some(Auth::Bearer(t)) => rb.bearer_auth(t),
                Some(Auth::Basic(u, p)) => rb.basic_auth(u, Some(p)),
                None => rb,
            };
            exchange(async move { rb.send().await.map_err(transport) })
        };
        let cached = self.tokens.get(&scope).map(Auth::Bearer);
        let had_token = cached.is_some();
        let mut resp = send(cached).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            if had_token {
                self.tokens.forget(&scope);
            }
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let auth = match challenge {
                Some(Challenge::Bearer { realm, service, .. }) => Some(Auth::Bearer(
                    self.fetch_token(&realm, service.as_deref(), &scope).await?,
                )),
                Some(Challenge::Basic) => match &self.credentials {
                    Some((u, p)) => Some(Auth::Basic(u.clone(), p.clone())),
                    None => {
                        return Err(UpstreamError::Denied(
                            "it wants credentials and none are configured".into(),
                        ));
                    }
                },
                None => {
                    return Err(UpstreamError::Denied(
                        "401 without a usable challenge".into(),
                    ));
                }
            };
            resp = send(auth).await?;
        }
        if let Some(rem) = resp
            .headers()
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            self.ratelimit_remaining.store(rem, Ordering::Relaxed);
        }
        let status = resp.status();
        match status {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => Err(UpstreamError::NotFound(url.to_owned())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(UpstreamError::Denied(status.to_string()))
            }
            StatusCode::TOO_MANY_REQUESTS => Err(UpstreamError::TooManyRequests {
                retry_after: retry_after(resp.headers()),
            }),
            s if s.is_server_error() => Err(UpstreamError::Unavailable(s.to_string())),
            s => Err(UpstreamError::Invalid(format!("unexpected status {s}"))),
        }
    }

    /// A token for `scope` from the token service at `realm`, cached for
    /// as long as the service says (within reason); the whole exchange, body
    /// included, is one attempt's time.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let (token, ttl) = exchange(token::fetch(
            &self.http,
            realm,
            service,
            &[scope],
            self.credentials.as_ref(),
        ))
        .await?;
        self.tokens.put(scope, token.clone(), ttl);
        Ok(token)
    }
}

enum Auth {
    Bearer(String),
    Basic(String, String),
}

/// The media type of a response, without parameters.
fn content_type(h: &HeaderMap) -> String {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

/// The `Docker-Content-Digest` a response announced, if any; a malformed one
/// is an invalid response.
pub(super) fn announced_digest(h: &HeaderMap) -> Result<Option<Digest>, UpstreamError> {
    h.get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<Digest>())
        .transpose()
        .map_err(|e| UpstreamError::Invalid(e.to_string()))
}

/// The media type from a manifest's own `mediaType` field, for upstreams that
/// send a generic Content-Type.
fn sniff_media_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    p.media_type.or_else(|| {
        Some(
            if p.manifests.is_some() {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            }
            .to_owned(),
        )
    })
}

/// Percent-encodes a query value (media types carry `+` and `/`).
fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode("application/vnd.example.sbom+json"),
            "application%2Fvnd.example.sbom%2Bjson"
        );
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn accept_names_every_manifest_type() {
        for t in [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ] {
            assert!(MANIFEST_ACCEPT.contains(t));
        }
    }

    #[test]
    fn sniffs_missing_media_types() {
        assert_eq!(
            sniff_media_type(br#"{"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            sniff_media_type(br#"{"config":{}}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            sniff_media_type(format!(r#"{{"mediaType":"{DOCKER_MANIFEST}"}}"#).as_bytes())
                .as_deref(),
            Some(DOCKER_MANIFEST)
        );
    }
}
