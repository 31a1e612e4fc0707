//! Blobs on a replication target: whether it has one, a cross-repository
//! mount, and the streamed upload (one POST, one monolithic PUT).

use http::{Method, StatusCode, header};
use reqwest::Url;

use super::super::client::READ_TIMEOUT;
use super::super::deadline::Deadline;
use super::super::error::UpstreamError;
use super::super::response::transport;
use super::auth::Scopes;
use super::call::{Request, failure};
use super::metered::{Metered, Progress};
use super::{CALL_TIMEOUT, Target, check_digest, within};
use crate::oci::Digest;

/// How long cancelling an abandoned upload session may take.
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Target {
    /// Whether `repo` on the target has the blob (HEAD).
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> Result<bool, UpstreamError> {
        let scopes = Scopes::push(repo);
        let url = self.endpoint(&format!("/v2/{repo}/blobs/{digest}"))?;
        let deadline = Deadline::after(CALL_TIMEOUT);
        within(deadline, async {
            let resp = self
                .call(&Request::new(Method::HEAD, url, &scopes), deadline)
                .await?;
            match resp.status() {
                StatusCode::NOT_FOUND => Ok(false),
                s if s.is_success() => Ok(true),
                _ => Err(failure(resp).await),
            }
        })
        .await
    }

    /// Cross-repository mount: `POST /v2/{repo}/blobs/uploads/?mount={digest}&from={from}`.
    /// 201 -> true. 202 (the target opened an upload instead: it lacks the
    /// blob in `from`, or will not lend it) -> that session is cancelled and
    /// the answer is false: upload the blob.
    pub async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, UpstreamError> {
        let scopes = Scopes::mount(repo, from);
        let url = self.endpoint(&format!(
            "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
        ))?;
        let deadline = Deadline::after(CALL_TIMEOUT);
        let resp = within(deadline, async {
            let resp = self
                .call(&Request::new(Method::POST, url, &scopes), deadline)
                .await?;
            match resp.status() {
                StatusCode::CREATED | StatusCode::ACCEPTED => Ok(resp),
                _ => Err(failure(resp).await),
            }
        })
        .await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(true);
        }
        let session = location(&resp)?;
        tracing::debug!(target_url = %self.base, repo, %digest, from, "mount refused; cancelling the upload the target opened");
        self.cancel(session, &Scopes::push(repo)).await;
        Ok(false)
    }

    /// Uploads a blob whose bytes stream from `body` (exactly `size` bytes):
    /// a POST (retried like any call) opens the session, then ONE monolithic
    /// `PUT {location}?digest=` with `Content-Length: size` carries the
    /// stream. The PUT is not retried (the body cannot be replayed; the
    /// caller retries later with a fresh one); a failed PUT's session is
    /// cancelled.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), UpstreamError> {
        let scopes = Scopes::push(repo);
        let start = self.endpoint(&format!("/v2/{repo}/blobs/uploads/"))?;
        let deadline = Deadline::after(CALL_TIMEOUT);
        let (session, auth) = within(deadline, async {
            let resp = self
                .call(&Request::new(Method::POST, start, &scopes), deadline)
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(unexpected("upload start", resp).await);
            }
            let session = location(&resp)?;
            Ok((session, self.auth.preempt(&self.http, &scopes).await?))
        })
        .await?;
        let mut put = session.clone();
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let progress = Progress::new();
        let body = Metered::new(body, size, self.sent.clone(), progress.clone());
        let rb = self
            .http
            .put(put.clone())
            .header(header::CONTENT_LENGTH, size)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap(body));
        let rb = self.authorize(rb, &put, auth);
        let sent = tokio::select! {
            r = rb.send() => r.map_err(|e| match progress.source_error() {
                Some(why) => UpstreamError::Invalid(why),
                None => transport(e),
            }),
            () = progress.stalled(READ_TIMEOUT) => Err(UpstreamError::Unavailable(format!(
                "the upload of {digest} to {} stalled for {}s",
                self.base,
                READ_TIMEOUT.as_secs()
            ))),
        };
        let err = match sent {
            Ok(resp) if resp.status().is_success() => {
                return check_digest(resp.headers(), digest, "blob");
            }
            Ok(resp) => {
                if resp.status() == StatusCode::UNAUTHORIZED {
                    self.auth.forget(&scopes);
                }
                failure(resp).await
            }
            Err(e) => e,
        };
        tracing::debug!(target_url = %self.base, repo, %digest, error = %err, "blob upload failed; cancelling its session");
        self.cancel(session, &scopes).await;
        Err(err)
    }

    /// Cancels an upload session the target opened (best effort: an
    /// abandoned session also expires on the target).
    async fn cancel(&self, session: Url, scopes: &Scopes) {
        let req = Request::new(Method::DELETE, session, scopes);
        let r = self.call(&req, Deadline::after(CANCEL_TIMEOUT)).await;
        if let Err(e) = r {
            tracing::debug!(target_url = %self.base, error = %e, "could not cancel an upload session");
        }
    }
}

/// The absolute URL of a response's `Location` (upload sessions: wharf sends
/// it relative, Distribution absolute).
fn location(resp: &reqwest::Response) -> Result<Url, UpstreamError> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| UpstreamError::Invalid(format!("{} without a Location", resp.status())))?;
    resp.url()
        .join(loc)
        .map_err(|e| UpstreamError::Invalid(format!("Location {loc:?}: {e}")))
}

/// A success status other than the one the protocol calls for.
async fn unexpected(what: &str, resp: reqwest::Response) -> UpstreamError {
    if resp.status().is_success() {
        UpstreamError::Invalid(format!("{what}: unexpected status {}", resp.status()))
    } else {
        failure(resp).await
    }
}
