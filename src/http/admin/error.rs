//! The one place where admin API failures become responses:
//! `{"error":{"code":"NOT_FOUND","message":"..."}}`, with status and code
//! decided by the same `match`. Handlers only return `Err`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::http::ApiError;
use crate::http::body::{Body, full};
use crate::store::StoreError;

/// Everything an admin request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed (body, reference, name); the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials missing or wrong: 401 with the API's challenge.
    #[error("{message}")]
    Unauthorized {
        /// The `WWW-Authenticate` value (the same the OCI API sends).
        challenge: String,
        /// What went wrong.
        message: String,
    },
    /// Authenticated, but not an admin.
    #[error("{0}")]
    Denied(String),
    /// No such endpoint, repository, tag or worker.
    #[error("{0}")]
    NotFound(String),
    /// The endpoint exists for another method.
    #[error("{method} is not allowed here; use {allow}")]
    MethodNotAllowed {
        /// The method the request used (a prefix of it).
        method: String,
        /// The method the endpoint answers, sent as `Allow`.
        allow: http::Method,
    },
    /// The request body is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Too many failed logins from this address.
    #[error("{message}")]
    TooManyRequests {
        /// Seconds to wait, sent as `Retry-After`.
        retry_after: u64,
        /// Why.
        message: String,
    },
    /// The index or content failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something else broke; logged, and the client is told to look there.
    #[error("{0}")]
    Internal(String),
    /// A registry a pass talked to failed (an upstream down): 502, with the
    /// message (it names the registry and what it answered, nothing internal).
    #[error("{0}")]
    Upstream(String),
}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    error: Entry<'a>,
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
}

impl From<ApiError> for AdminError {
    /// An authorization refusal, as the OCI surface computed it (challenge and
    /// refusal metrics included), in this surface's shape.
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized { challenge, message } => {
                AdminError::Unauthorized { challenge, message }
            }
            ApiError::Denied(m) => AdminError::Denied(m),
            ApiError::TooManyRequests {
                retry_after,
                message,
            } => AdminError::TooManyRequests {
                retry_after,
                message,
            },
            ApiError::Store(s) => AdminError::Store(s),
            other => AdminError::Internal(other.to_string()),
        }
    }
}

impl From<crate::workers::WorkerError> for AdminError {
    /// A pass the admin API ran failed: the store's error keeps its mapping.
    fn from(e: crate::workers::WorkerError) -> Self {
        match e {
            crate::workers::WorkerError::Store(s) => AdminError::Store(s),
            crate::workers::WorkerError::Other(m) => AdminError::Internal(m),
            crate::workers::WorkerError::Upstream(m) => AdminError::Upstream(m),
            crate::workers::WorkerError::Refused(m) => AdminError::BadRequest(m),
            e @ crate::workers::WorkerError::Busy(_) => AdminError::TooManyRequests {
                retry_after: 5,
                message: e.to_string(),
            },
        }
    }
}

impl AdminError {
    /// Status and code, decided together.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            AdminError::BadRequest(_) => (S::BAD_REQUEST, "BAD_REQUEST"),
            AdminError::Unauthorized { .. } => (S::UNAUTHORIZED, "UNAUTHORIZED"),
            AdminError::Denied(_) => (S::FORBIDDEN, "DENIED"),
            AdminError::NotFound(_) => (S::NOT_FOUND, "NOT_FOUND"),
            AdminError::MethodNotAllowed { .. } => (S::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            AdminError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "TOO_LARGE"),
            AdminError::TooManyRequests { .. } => (S::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS"),
            AdminError::Store(e) => match e {
                StoreError::BlobUnknown(_)
                | StoreError::ManifestUnknown(_)
                | StoreError::NameUnknown(_) => (S::NOT_FOUND, "NOT_FOUND"),
                StoreError::Pinned { .. } => (S::FORBIDDEN, "DENIED"),
                StoreError::BackupRefused(_) | StoreError::TagTaken { .. } => {
                    (S::CONFLICT, "CONFLICT")
                }
                StoreError::BackupFailed(_) => (S::INTERNAL_SERVER_ERROR, "BACKUP_FAILED"),
                StoreError::Closed => (S::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
                _ => (S::INTERNAL_SERVER_ERROR, "INTERNAL"),
            },
            AdminError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "INTERNAL"),
            AdminError::Upstream(_) => (S::BAD_GATEWAY, "UPSTREAM_FAILED"),
        }
    }

    /// The response clients see. 5xx causes are logged here, once.
    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::warn!(error = %self, "admin request failed");
            match &self {
                AdminError::Store(StoreError::Closed) => "wharf is shutting down".to_owned(),
                AdminError::Upstream(m) => m.clone(),
                // Its own words: what was corrupt or which disk failed, and what to do.
                AdminError::Store(e @ StoreError::BackupFailed(_)) => e.to_string(),
                _ => "internal error; see the server log".to_owned(),
            }
        } else {
            self.to_string()
        };
        let json = serde_json::to_vec(&Envelope {
            error: Entry {
                code,
                message: &message,
            },
        })
        .unwrap_or_else(|_| b"{\"error\":{}}".to_vec());
        let len = json.len();
        let mut resp = Response::new(full(Bytes::from(json)));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        match &self {
            AdminError::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            AdminError::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(allow.as_str()) {
                    h.insert(header::ALLOW, v);
                }
            }
            AdminError::TooManyRequests { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        resp
    }
}
