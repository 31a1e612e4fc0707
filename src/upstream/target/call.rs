//! One call to a replication target: authenticated (see `auth`), each attempt
//! bounded, retried with backoff on connect errors, 5xx and short 429s, and
//! what the target said on failure turned into an [`UpstreamError`] carrying
//! its OCI error codes and messages (`MANIFEST_BLOB_UNKNOWN: blob unknown to
//! registry`), so an operator reading the replication error knows why.

use std::time::Duration;

use backon::Retryable;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use reqwest::Url;

use super::super::client::READ_TIMEOUT;
use super::super::deadline::{Deadline, next_wait};
use super::super::error::UpstreamError;
use super::super::response::{read_capped, retry_after, transport};
use super::Target;
use super::auth::{Auth, Scopes};

/// A 429 asking to wait longer than this is returned, not waited out inside
/// the call: the replication worker backs off (and works on other targets).
pub(super) const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// The most of an error body read for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// The longest wait for an error body: its status already says what failed,
/// and a target that sends headers and then nothing (a blob PUT's answer is
/// read outside any call deadline) must not hold the worker for ever.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// One request, as the retry loop repeats it (its body is replayable).
pub(super) struct Request<'a> {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) accept: Option<&'a str>,
    pub(super) content_type: Option<&'a str>,
    pub(super) body: Option<Bytes>,
    pub(super) scopes: &'a Scopes,
}

impl<'a> Request<'a> {
    /// A bodiless request.
    pub(super) fn new(method: Method, url: Url, scopes: &'a Scopes) -> Request<'a> {
        Request {
            method,
            url,
            accept: None,
            content_type: None,
            body: None,
            scopes,
        }
    }
}

impl Target {
    /// Sends `req` until it has an answer that is not worth retrying, within
    /// `deadline`: any status but 5xx and 429 comes back for the caller to
    /// read (see [`failure`] for the usual mapping).
    pub(super) async fn call(
        &self,
        req: &Request<'_>,
        deadline: Deadline,
    ) -> Result<reqwest::Response, UpstreamError> {
        let attempts = (|| self.attempt(req))
            .retry(Deadline::backoff())
            .when(UpstreamError::retryable)
            .adjust(|e, wait| inline_wait(e, wait, deadline.remaining()))
            .notify(|e, wait| {
                tracing::debug!(target_url = %self.base, url = %req.url, error = %e, ?wait, "retrying a call to the replication target");
            });
        tokio::time::timeout_at(deadline.instant(), attempts)
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Unavailable(format!(
                    "no answer from {} in time",
                    req.url
                )))
            })
    }

    /// One attempt: the answer, or a retryable error for 5xx and 429.
    async fn attempt(&self, req: &Request<'_>) -> Result<reqwest::Response, UpstreamError> {
        let resp = self.exchange(req).await?;
        match resp.status() {
            StatusCode::TOO_MANY_REQUESTS => Err(UpstreamError::TooManyRequests {
                retry_after: retry_after(resp.headers()),
            }),
            s if s.is_server_error() => Err(failure(resp).await),
            _ => Ok(resp),
        }
    }

    /// Sends once with what auth already knows; on a 401, answers the
    /// challenge and sends once more.
    async fn exchange(&self, req: &Request<'_>) -> Result<reqwest::Response, UpstreamError> {
        let auth = self.auth.preempt(&self.http, req.scopes).await?;
        let resp = self.send_once(req, auth).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let auth = self
            .auth
            .answer(&self.http, challenge.as_deref(), req.scopes)
            .await?;
        let resp = self.send_once(req, Some(auth)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.auth.forget(req.scopes);
        }
        Ok(resp)
    }

    async fn send_once(
        &self,
        req: &Request<'_>,
        auth: Option<Auth>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut rb = self.http.request(req.method.clone(), req.url.clone());
        if let Some(a) = req.accept {
            rb = rb.header(header::ACCEPT, a);
        }
        if let Some(t) = req.content_type {
            rb = rb.header(header::CONTENT_TYPE, t);
        }
        if let Some(b) = &req.body {
            rb = rb.body(b.clone());
        } else if matches!(req.method, Method::POST | Method::PUT) {
            rb = rb.header(header::CONTENT_LENGTH, "0");
        }
        rb = self.authorize(rb, &req.url, auth);
        let resp = tokio::time::timeout(READ_TIMEOUT, rb.send())
            .await
            .map_err(|_| {
                UpstreamError::Unavailable(format!(
                    "no response headers from {} within {}s",
                    req.url,
                    READ_TIMEOUT.as_secs()
                ))
            })?
            .map_err(transport)?;
        if let Some(b) = &req.body {
            self.count_sent(b.len() as u64);
        }
        Ok(resp)
    }

    /// Puts `auth` on a request to `url`, but only when `url` is the
    /// target's own origin: an upload `Location` or `Link` elsewhere gets no
    /// credentials (reqwest drops them on a cross-host redirect likewise).
    pub(super) fn authorize(
        &self,
        rb: reqwest::RequestBuilder,
        url: &Url,
        auth: Option<Auth>,
    ) -> reqwest::RequestBuilder {
        if url.origin() != self.base_url.origin() {
            return rb;
        }
        match auth {
            Some(Auth::Bearer(t)) => rb.bearer_auth(t),
            Some(Auth::Basic(u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }
}

/// The wait before the next attempt: like the pull client's, but a 429 asking
/// for more than [`MAX_INLINE_WAIT`] ends the call at once.
fn inline_wait(
    err: &UpstreamError,
    backoff: Option<Duration>,
    remaining: Duration,
) -> Option<Duration> {
    match err {
        UpstreamError::TooManyRequests {
            retry_after: Some(s),
        } if Duration::from_secs(*s) > MAX_INLINE_WAIT => None,
        _ => next_wait(err, backoff, remaining),
    }
}

/// What a failed response means, with the target's own error codes and
/// messages in the text: 404 not found, 401/403 denied, 429 rate limited,
/// 5xx unavailable, anything else invalid.
pub(super) async fn failure(resp: reqwest::Response) -> UpstreamError {
    let status = resp.status();
    let url = resp.url().clone();
    let ra = retry_after(resp.headers());
    let said = tokio::time::timeout(
        ERROR_BODY_TIMEOUT,
        read_capped(resp, MAX_ERROR_BODY, "error body"),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|b| oci_errors(&b))
    .unwrap_or_default();
    let text = if said.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {said}")
    };
    match status {
        StatusCode::NOT_FOUND => UpstreamError::NotFound(format!("{url} ({text})")),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::Denied(text),
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests { retry_after: ra },
        s if s.is_server_error() => UpstreamError::Unavailable(text),
        _ => UpstreamError::Invalid(format!("{url}: {text}")),
    }
}

/// The codes of an OCI error body (`{"errors":[{"code","message"}]}`).
pub(super) fn error_codes(body: &[u8]) -> Vec<String> {
    parse_errors(body).into_iter().map(|(c, _)| c).collect()
}

/// An OCI error body as `CODE: message; CODE: message` (empty when it is not one).
pub(super) fn oci_errors(body: &[u8]) -> String {
    parse_errors(body)
        .into_iter()
        .map(|(c, m)| if m.is_empty() { c } else { format!("{c}: {m}") })
        .collect::<Vec<_>>()
        .join("; ")
}

fn parse_errors(body: &[u8]) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    serde_json::from_slice::<Envelope>(body)
        .map(|e| {
            e.errors
                .into_iter()
                .take(8)
                .map(|x| {
                    let clip = |s: String| s.chars().take(200).collect::<String>();
                    (
                        clip(x.code.unwrap_or_default()),
                        clip(x.message.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_error_bodies_become_text() {
        let body = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"},{"code":"DENIED"}]}"#;
        assert_eq!(
            oci_errors(body),
            "MANIFEST_BLOB_UNKNOWN: blob unknown to registry; DENIED"
        );
        assert_eq!(error_codes(body), vec!["MANIFEST_BLOB_UNKNOWN", "DENIED"]);
        assert_eq!(oci_errors(b"<html>502</html>"), "");
    }

    #[test]
    fn long_rate_limits_are_returned_not_waited() {
        let ms = Some(Duration::from_millis(100));
        let big = Duration::from_secs(60);
        let limited = |s| UpstreamError::TooManyRequests {
            retry_after: Some(s),
        };
        assert_eq!(inline_wait(&limited(30), ms, big), None);
        assert_eq!(
            inline_wait(&limited(2), ms, big),
            Some(Duration::from_secs(2))
        );
        let down = UpstreamError::Unavailable("503".into());
        assert_eq!(inline_wait(&down, ms, big), ms);
    }
}
