//! Calls to one upstream registry: manifests (GET/HEAD) and blobs, following
//! its auth challenge, within its rate limit, retried with backoff on connect
//! errors, 5xx and 429 (honouring `Retry-After`), behind its circuit breaker.
//! Credentials go only to the upstream host: reqwest drops `Authorization` on a
//! redirect to another host (Docker Hub sends blobs to a CDN).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, Method, StatusCode, header};

use super::breaker::Breaker;
use super::token::{self, Challenge, TokenCache};
use crate::oci::Digest;
use crate::oci::Reference;
use crate::oci::manifest::{Descriptor, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST};

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream does not have it (404).
    #[error("{0} is not known upstream")]
    NotFound(String),
    /// The upstream refused our credentials or scope.
    #[error("the upstream registry denied access: {0}")]
    Denied(String),
    /// The upstream's rate limit (429).
    #[error("the upstream registry's rate limit is reached")]
    TooManyRequests {
        /// Seconds it asked to wait.
        retry_after: Option<u64>,
    },
    /// Connect error, timeout or 5xx.
    #[error("the upstream registry is unavailable: {0}")]
    Unavailable(String),
    /// Skipped: too many recent failures.
    #[error("the upstream registry failed repeatedly; next try in {0}s")]
    CircuitOpen(u64),
    /// A response that makes no sense (bad digest header, oversized manifest).
    #[error("the upstream registry sent an invalid response: {0}")]
    Invalid(String),
}

impl UpstreamError {
    fn retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable(_) | UpstreamError::TooManyRequests { .. }
        )
    }

    /// Failures that count against the circuit breaker (the upstream is sick,
    /// not merely saying no).
    fn is_outage(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable(_) | UpstreamError::TooManyRequests { .. }
        )
    }
}

/// A manifest as the upstream describes it (and its bytes, for a GET).
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    /// Digest of the bytes (from `Docker-Content-Digest`, verified for GETs).
    pub digest: Digest,
    /// Content-Type.
    pub media_type: String,
    /// Bytes (GET only).
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
}

/// Largest tag list accepted from an upstream.
const MAX_TAG_LIST_BYTES: u64 = 16 << 20;

/// A token response is a JWT or two in JSON; anything near this is not one.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 1 << 20;

/// Connect timeout for upstream calls.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while reading an upstream response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn retry_after(h: &HeaderMap) -> Option<u64> {
    h.get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
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
        })
    }

    /// Docker Hub's `ratelimit-remaining` from the last response, if it sent one.
    pub fn ratelimit_remaining(&self) -> Option<i64> {
        let v = self.ratelimit_remaining.load(Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    /// Whether the circuit breaker is skipping this upstream.
    pub fn is_skipped(&self) -> bool {
        self.breaker.is_open()
    }

    /// GET (with body) or HEAD a manifest.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let resp = self
            .request(
                method,
                &format!("/v2/{repo}/manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
                repo,
            )
            .await?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.parse::<Digest>())
            .transpose()
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        if head {
            let digest = announced.ok_or_else(|| {
                UpstreamError::Invalid("HEAD without Docker-Content-Digest".into())
            })?;
            return Ok(UpstreamManifest {
                digest,
                media_type,
                body: None,
            });
        }
        let body = read_capped(resp, MAX_MANIFEST_BYTES as u64, "manifest").await?;
        let digest = Digest::of_bytes(&body);
        if let Some(a) = announced {
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

    /// Starts a blob download; the caller streams and verifies the body.
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<reqwest::Response, UpstreamError> {
        self.request(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            None,
            repo,
        )
        .await
    }

    /// The size of a blob, from a HEAD: what a client's HEAD of a blob that is
    /// not cached needs, without downloading it.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64, UpstreamError> {
        let resp = self
            .request(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                None,
                repo,
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
    ) -> Result<(Vec<String>, Option<String>), UpstreamError> {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let resp = self
            .request(Method::GET, &format!("/v2/{repo}/tags/list{q}"), None, repo)
            .await?;
        let link = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(resp, MAX_TAG_LIST_BYTES, "tag list").await?;
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
    ) -> Result<Vec<Descriptor>, UpstreamError> {
        let q = artifact_type
            .map(|t| format!("?artifactType={}", percent_encode(t)))
            .unwrap_or_default();
        let resp = self
            .request(
                Method::GET,
                &format!("/v2/{repo}/referrers/{digest}{q}"),
                Some(OCI_INDEX),
                repo,
            )
            .await?;
        let body = read_capped(resp, MAX_MANIFEST_BYTES as u64, "referrers index").await?;
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

    async fn request(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        repo: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        if let Err(wait) = self.breaker.admit() {
            return Err(UpstreamError::CircuitOpen(wait.as_secs().max(1)));
        }
        let url = format!("{}{path}", self.base);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(2)
            .with_jitter();
        let result = (|| self.attempt(method.clone(), &url, accept, repo))
            .retry(backoff)
            .when(UpstreamError::retryable)
            .adjust(|e, dur| match e {
                // Wait as asked when it is short; otherwise give up and pass it on.
                UpstreamError::TooManyRequests {
                    retry_after: Some(s),
                } if *s > 10 => None,
                UpstreamError::TooManyRequests {
                    retry_after: Some(s),
                } => Some(Duration::from_secs(*s)),
                _ => dur,
            })
            .await;
        self.breaker
            .record(!matches!(&result, Err(e) if e.is_outage()));
        result
    }

    fn scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    async fn attempt(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
        repo: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        let scope = Self::scope(repo);
        let send = |auth: Option<Auth>| {
            let mut rb = self.http.request(method.clone(), url);
            if let Some(a) = accept {
                rb = rb.header(header::ACCEPT, a);
            }
            rb = match auth {
                Some(Auth::Bearer(t)) => rb.bearer_auth(t),
                Some(Auth::Basic(u, p)) => rb.basic_auth(u, Some(p)),
                None => rb,
            };
            rb.send()
        };
        let cached = self.tokens.get(&scope).map(Auth::Bearer);
        let had_token = cached.is_some();
        let mut resp = send(cached).await.map_err(transport)?;
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
            resp = send(auth).await.map_err(transport)?;
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

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let mut q: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(s) = service {
            q.push(("service", s));
        }
        let mut rb = self.http.get(realm).query(&q);
        if let Some((u, p)) = &self.credentials {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb.send().await.map_err(transport)?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(UpstreamError::Denied(
                    "the token service refused the credentials".into(),
                ));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                return Err(UpstreamError::TooManyRequests {
                    retry_after: retry_after(resp.headers()),
                });
            }
            s if s.is_server_error() => {
                return Err(UpstreamError::Unavailable(format!("token service: {s}")));
            }
            s => return Err(UpstreamError::Invalid(format!("token service: {s}"))),
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            // A float: any number is accepted (some services send a fraction,
            // a broken one something absurd), then clamped.
            expires_in: Option<f64>,
        }
        let body = read_capped(resp, MAX_TOKEN_RESPONSE_BYTES, "token response").await?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Invalid(format!("token response: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .ok_or_else(|| UpstreamError::Invalid("token response without a token".into()))?;
        self.tokens
            .put(scope, token.clone(), token::lifetime(t.expires_in));
        Ok(token)
    }
}

enum Auth {
    Bearer(String),
    Basic(String, String),
}

fn transport(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Unavailable(e.to_string())
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

/// Reads a small response body (manifest, tag list, index), refusing one
/// larger than `max` whether or not it announced its length: a broken or
/// hostile upstream cannot make wharf buffer without bound.
async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Bytes, UpstreamError> {
    let too_big = || UpstreamError::Invalid(format!("{what} larger than {} MiB", max >> 20));
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
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
