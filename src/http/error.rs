//! The one place where failures become the spec's JSON errors. Code and status
//! are decided by the same `match`; handlers only return `Err`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::{Body, full};
use super::router::RouteError;
use crate::oci::{ErrorCode, NameError};
use crate::store::StoreError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Storage said no (or broke).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The path did not parse.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A digest in a query parameter did not parse.
    #[error("invalid digest: {0}")]
    DigestParam(String),
    /// The upstream failed and nothing cached could answer.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// Bytes from an upstream did not verify; nothing was kept.
    #[error("{0}")]
    UpstreamCorrupt(String),
    /// A query parameter is malformed.
    #[error("{1}")]
    Invalid(ErrorCode, String),
    /// Authorization refused.
    #[error("{0}")]
    Denied(String),
    /// Credentials missing, wrong, or lacking scope: 401 with a challenge.
    #[error("{message}")]
    Unauthorized {
        /// The `WWW-Authenticate` value.
        challenge: String,
        /// What went wrong.
        message: String,
    },
    /// Slowed down (failed logins, too many uploads).
    #[error("{message}")]
    TooManyRequests {
        /// Seconds to wait, sent as `Retry-After`.
        retry_after: u64,
        /// Why.
        message: String,
    },
    /// A manifest body over the limit.
    #[error("manifest body is larger than 4 MiB")]
    ManifestTooLarge,
    /// The request body broke off (client gone, truncated, or timed out).
    #[error("request body ended early: {0}")]
    BodyRead(String),
    /// A Range header that cannot be satisfied for a blob of `size` bytes.
    #[error("requested range is not satisfiable for a blob of {size} bytes")]
    BadRange {
        /// Blob size.
        size: u64,
    },
    /// Content-Range of an upload chunk disagrees with the upload.
    #[error("chunk range does not continue the upload ({offset} bytes received so far)")]
    ChunkRange {
        /// Bytes received so far.
        offset: u64,
        /// Where to continue.
        location: String,
    },
}

/// Spec wire shape.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull
}

impl From<crate::proxy::ProxyError> for ApiError {
    fn from(e: crate::proxy::ProxyError) -> Self {
        use crate::proxy::ProxyError as P;
        use crate::proxy::inflight::DownloadError as D;
        match e {
            P::Store(s) | P::Download(D::Store(s)) => ApiError::Store(s),
            P::Upstream(u) | P::Download(D::Upstream(u)) => ApiError::Upstream(u),
            P::Download(D::Corrupt(m)) => ApiError::UpstreamCorrupt(m),
            P::TooManyDownloads(m) => ApiError::TooManyRequests {
                retry_after: 5,
                message: m.to_owned(),
            },
            P::NoReferrersApi => ApiError::Route(RouteError::NotFound),
        }
    }
}

impl ApiError {
    /// Status and code, decided together.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        use StatusCode as S;
        match self {
            ApiError::Store(e) => match e {
                StoreError::Io(io) if is_disk_full(io) => (S::INSUFFICIENT_STORAGE, C::Unknown),
                StoreError::Io(_)
                | StoreError::Index(_)
                | StoreError::Corrupt(_)
                | StoreError::Poisoned => (S::INTERNAL_SERVER_ERROR, C::Unknown),
                StoreError::Closed => (S::SERVICE_UNAVAILABLE, C::Unknown),
                StoreError::DigestMismatch { .. } => (S::BAD_REQUEST, C::DigestInvalid),
                StoreError::BlobUnknown(_) => (S::NOT_FOUND, C::BlobUnknown),
                StoreError::ManifestUnknown(_) => (S::NOT_FOUND, C::ManifestUnknown),
                StoreError::NameUnknown(_) => (S::NOT_FOUND, C::NameUnknown),
                StoreError::ManifestBlobUnknown(_) => (S::BAD_REQUEST, C::ManifestBlobUnknown),
                StoreError::ManifestInvalid(_) => (S::BAD_REQUEST, C::ManifestInvalid),
                StoreError::UploadUnknown => (S::NOT_FOUND, C::BlobUploadUnknown),
                StoreError::UploadRange { .. } => (S::RANGE_NOT_SATISFIABLE, C::BlobUploadInvalid),
                StoreError::SizeInvalid(_) => (S::BAD_REQUEST, C::SizeInvalid),
                StoreError::TooManyUploads { .. } => (S::TOO_MANY_REQUESTS, C::TooManyRequests),
                StoreError::ContentMissing { .. }
                | StoreError::BackupRefused(_)
                | StoreError::TagTaken { .. }
                | StoreError::BackupFailed(_) => (S::INTERNAL_SERVER_ERROR, C::Unknown),
                StoreError::Pinned { .. } => (S::FORBIDDEN, C::Denied),
            },
            ApiError::Route(RouteError::NotFound) => (S::NOT_FOUND, C::Unsupported),
            ApiError::Route(RouteError::MethodNotAllowed) => {
                (S::METHOD_NOT_ALLOWED, C::Unsupported)
            }
            ApiError::Route(RouteError::Name(NameError::Digest(_))) => {
                (S::BAD_REQUEST, C::DigestInvalid)
            }
            ApiError::Route(RouteError::Name(NameError::InvalidTag(_))) => {
                (S::NOT_FOUND, C::ManifestUnknown)
            }
            ApiError::Route(RouteError::Name(NameError::InvalidName(_))) => {
                (S::BAD_REQUEST, C::NameInvalid)
            }
            ApiError::DigestParam(_) => (S::BAD_REQUEST, C::DigestInvalid),
            ApiError::Upstream(e) => {
                use crate::upstream::UpstreamError as U;
                match e {
                    U::NotFound(_) => (S::NOT_FOUND, C::NameUnknown),
                    U::Denied(_) => (S::FORBIDDEN, C::Denied),
                    U::TooManyRequests { .. } => (S::TOO_MANY_REQUESTS, C::TooManyRequests),
                    U::Unavailable(_) | U::CircuitOpen(_) => (S::SERVICE_UNAVAILABLE, C::Unknown),
                    U::Invalid(_) => (S::BAD_GATEWAY, C::Unknown),
                }
            }
            ApiError::UpstreamCorrupt(_) => (S::BAD_GATEWAY, C::Unknown),
            ApiError::Invalid(code, _) => (S::BAD_REQUEST, *code),
            ApiError::Denied(_) => (S::FORBIDDEN, C::Denied),
            ApiError::Unauthorized { .. } => (S::UNAUTHORIZED, C::Unauthorized),
            ApiError::TooManyRequests { .. } => (S::TOO_MANY_REQUESTS, C::TooManyRequests),
            ApiError::ManifestTooLarge => (S::PAYLOAD_TOO_LARGE, C::ManifestInvalid),
            ApiError::BodyRead(_) => (S::BAD_REQUEST, C::BlobUploadInvalid),
            ApiError::BadRange { .. } => (S::RANGE_NOT_SATISFIABLE, C::BlobUnknown),
            ApiError::ChunkRange { .. } => (S::RANGE_NOT_SATISFIABLE, C::BlobUploadInvalid),
        }
    }

    /// The response clients see. 5xx causes are logged here, once.
    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
            match &self {
                ApiError::Store(StoreError::Io(io)) if is_disk_full(io) => {
                    "storage is full".to_owned()
                }
                // Upstream trouble is the operator's and the client's business: say it.
                ApiError::Upstream(_) | ApiError::UpstreamCorrupt(_) => self.to_string(),
                _ => "internal error; see the server log".to_owned(),
            }
        } else {
            self.to_string()
        };
        let body = Envelope {
            errors: [Entry {
                code: code.as_str(),
                message: &message,
                detail: None,
            }],
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
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
            ApiError::BadRange { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Store(StoreError::TooManyUploads { retry_after, .. })
            | ApiError::Upstream(crate::upstream::UpstreamError::TooManyRequests {
                retry_after: Some(retry_after),
            })
            | ApiError::Upstream(crate::upstream::UpstreamError::CircuitOpen(retry_after)) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::ChunkRange { offset, location } => {
                if let Ok(v) = HeaderValue::from_str(&super::range_header(*offset)) {
                    h.insert(header::RANGE, v);
                }
                if let Ok(v) = HeaderValue::from_str(location) {
                    h.insert(header::LOCATION, v);
                }
            }
            _ => {}
        }
        resp
    }
}
