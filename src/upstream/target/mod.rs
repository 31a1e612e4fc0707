//! The replication target client: what the `replicate` worker uses to push
//! hosted repositories to another registry (a second wharf, CNCF
//! Distribution, any v2 registry). It checks what the target has (HEADs),
//! mounts blobs across repositories, streams blob uploads (one monolithic
//! PUT each, never buffered), puts manifests, lists tags and deletes.
//!
//! Auth follows the target's challenge (Basic or Bearer, see `auth`);
//! credentials go only to the target's own origin. Calls are background work:
//! each gets [`CALL_TIMEOUT`] across its retries (connect errors, 5xx, and
//! 429s asking for at most a few seconds), and a longer 429 is returned for
//! the worker to back off. A blob PUT is never retried here (its body cannot
//! be replayed) and has no total timeout: it fails only when it stalls.

mod auth;
mod blobs;
mod call;
mod metered;
mod tags;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use reqwest::Url;

use self::auth::{Scopes, TargetAuth};
use self::call::{Request, error_codes, failure, oci_errors};
use super::client::{CONNECT_TIMEOUT, MANIFEST_ACCEPT, announced_digest};
use super::deadline::Deadline;
use super::error::UpstreamError;
use super::response::read_capped;
use crate::oci::Digest;
use crate::oci::manifest::MAX_MANIFEST_BYTES;

/// How long one call (its retries, auth and small body included) may take:
/// replication is background work, so longer than a client-facing pull.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach one replication target.
pub struct TargetSettings {
    /// Base URL of its v2 API (`http://192.168.1.20:5000`).
    pub url: String,
    /// Username and password, if configured.
    pub credentials: Option<(String, String)>,
}

/// What a DELETE on the target did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted.
    Done,
    /// It was not there.
    Absent,
    /// The target refuses deletes (405, or 400 `UNSUPPORTED`: Distribution
    /// without `storage.delete`; Distribution 2.8 also cannot untag).
    Unsupported,
}

/// One replication target.
pub struct Target {
    base: String,
    base_url: Url,
    http: reqwest::Client,
    auth: TargetAuth,
    sent: Arc<AtomicU64>,
}

impl Target {
    /// Builds the client for one target; the URL must be http(s).
    pub fn new(s: TargetSettings) -> Result<Target, UpstreamError> {
        let base = s.url.trim_end_matches('/').to_owned();
        let base_url = Url::parse(&base)
            .map_err(|e| UpstreamError::Invalid(format!("target URL {base:?}: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host().is_none() {
            return Err(UpstreamError::Invalid(format!(
                "target URL {base:?} is not an http(s) URL"
            )));
        }
        // No client-wide read timeout: in reqwest it would bound a whole
        // upload. Ordinary calls bound their headers per attempt instead, and
        // uploads end on a stall (see `metered`).
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        Ok(Target {
            base,
            base_url,
            http,
            auth: TargetAuth::new(s.credentials),
            sent: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The base URL as configured, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Blob and manifest body bytes uploaded so far (for metrics and benches).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn count_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    fn endpoint(&self, path: &str) -> Result<Url, UpstreamError> {
        Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| UpstreamError::Invalid(format!("{path}: {e}")))
    }

    /// The digest `reference` names on the target (HEAD; a target that
    /// announces no `Docker-Content-Digest` is asked with GET and the bytes
    /// hashed); None when it has no such manifest.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Digest>, UpstreamError> {
        let scopes = Scopes::push(repo);
        let url = self.endpoint(&format!("/v2/{repo}/manifests/{reference}"))?;
        let deadline = Deadline::after(CALL_TIMEOUT);
        within(deadline, async {
            let mut req = Request::new(Method::HEAD, url.clone(), &scopes);
            req.accept = Some(MANIFEST_ACCEPT);
            let resp = self.call(&req, deadline).await?;
            match resp.status() {
                StatusCode::NOT_FOUND => return Ok(None),
                s if s.is_success() => {
                    if let Some(d) = announced_digest(resp.headers())? {
                        return Ok(Some(d));
                    }
                }
                _ => return Err(failure(resp).await),
            }
            tracing::debug!(target_url = %self.base, repo, reference, "HEAD without Docker-Content-Digest; hashing the manifest");
            req.method = Method::GET;
            let resp = self.call(&req, deadline).await?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(None),
                s if s.is_success() => {
                    let body = read_capped(resp, MAX_MANIFEST_BYTES as u64, "manifest").await?;
                    Ok(Some(Digest::of_bytes(&body)))
                }
                _ => Err(failure(resp).await),
            }
        })
        .await
    }

    /// `GET /v2/` with the credentials: Ok when the target takes them. A
    /// refusal of one repository (the credentials may push only some names)
    /// is told from refused credentials this way.
    pub async fn ping(&self) -> Result<(), UpstreamError> {
        let scopes = Scopes::none();
        let url = self.endpoint("/v2/")?;
        let deadline = Deadline::after(CALL_TIMEOUT);
        within(deadline, async {
            let resp = self
                .call(&Request::new(Method::GET, url, &scopes), deadline)
                .await?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(failure(resp).await)
            }
        })
        .await
    }

    /// `PUT /v2/{repo}/manifests/{reference}` with Content-Type `media_type`;
    /// the target's `Docker-Content-Digest`, when sent, must be the digest of
    /// `bytes`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), UpstreamError> {
        let scopes = Scopes::push(repo);
        let url = self.endpoint(&format!("/v2/{repo}/manifests/{reference}"))?;
        let digest = Digest::of_bytes(&bytes);
        let mut req = Request::new(Method::PUT, url, &scopes);
        req.content_type = Some(media_type);
        req.body = Some(bytes);
        let deadline = Deadline::after(CALL_TIMEOUT);
        within(deadline, async {
            let resp = self.call(&req, deadline).await?;
            if !resp.status().is_success() {
                return Err(failure(resp).await);
            }
            check_digest(resp.headers(), &digest, "manifest")
        })
        .await
    }

    /// `DELETE /v2/{repo}/manifests/{reference}` (a tag or a digest).
    pub async fn delete_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Deleted, UpstreamError> {
        let scopes = Scopes::delete(repo);
        let url = self.endpoint(&format!("/v2/{repo}/manifests/{reference}"))?;
        let deadline = Deadline::after(CALL_TIMEOUT);
        within(deadline, async {
            let resp = self
                .call(
                    &Request::new(Method::DELETE, url.clone(), &scopes),
                    deadline,
                )
                .await?;
            match resp.status() {
                s if s.is_success() => Ok(Deleted::Done),
                StatusCode::NOT_FOUND => Ok(Deleted::Absent),
                StatusCode::METHOD_NOT_ALLOWED => Ok(Deleted::Unsupported),
                StatusCode::BAD_REQUEST => {
                    let body = read_capped(resp, 64 << 10, "error body").await?;
                    let codes = error_codes(&body);
                    let by_tag = reference.parse::<Digest>().is_err();
                    // Distribution 2.8 answers an untag with DIGEST_INVALID.
                    if codes
                        .iter()
                        .any(|c| c == "UNSUPPORTED" || (by_tag && c == "DIGEST_INVALID"))
                    {
                        Ok(Deleted::Unsupported)
                    } else {
                        Err(UpstreamError::Invalid(format!(
                            "{url}: 400 Bad Request: {}",
                            oci_errors(&body)
                        )))
                    }
                }
                _ => Err(failure(resp).await),
            }
        })
        .await
    }
}

/// Runs `call` within `deadline`.
async fn within<T>(
    deadline: Deadline,
    call: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout_at(deadline.instant(), call)
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::Unavailable(format!(
                "the target did not answer within {}s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

/// The target's `Docker-Content-Digest`, when it sent one, must be `want`.
fn check_digest(h: &http::HeaderMap, want: &Digest, what: &str) -> Result<(), UpstreamError> {
    match announced_digest(h)? {
        Some(d) if d != *want => Err(UpstreamError::Invalid(format!(
            "the target stored the {what} as {d}, not {want}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_can_run_on_any_worker_thread() {
        fn send<T: Send>(_: &T) {}
        fn shared<T: Send + Sync>() {}
        shared::<Target>();
        let t = Target::new(TargetSettings {
            url: "http://127.0.0.1:9".into(),
            credentials: None,
        })
        .unwrap();
        let d = Digest::of_bytes(b"x");
        send(&t.push_blob("a", &d, 1, reqwest::Body::from("x")));
        send(&t.mount_blob("a", &d, "b"));
        send(&t.put_manifest("a", "t", "x", Bytes::new()));
        send(&t.manifest_digest("a", "t"));
        send(&t.delete_manifest("a", "t"));
        send(&t.tags("a", 1));
        send(&t.has_blob("a", &d));
        send(&t.ping());
    }

    #[test]
    fn target_urls_are_checked_and_trimmed() {
        let t = |u: &str| {
            Target::new(TargetSettings {
                url: u.into(),
                credentials: None,
            })
        };
        assert_eq!(t("http://h:5000/").unwrap().url(), "http://h:5000");
        assert!(t("ftp://h").is_err());
        assert!(t("not a url").is_err());
    }
}
